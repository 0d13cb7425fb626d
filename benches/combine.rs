//! Late rows into a large partition (issue 25): 5,000 rows appended to a processed
//! day of 5,000,000, brought up to date two ways, through the default transform:
//!
//! - replace: a whole run of the partition as latefill makes it today (the
//!   transform over all 5,005,000 rows, the partition's replace and its commit);
//! - combine: `appended_since` (the partition's files at the processed version and
//!   now) and `combined_result` (the transform over the appended file, combined with
//!   the target's rows), collected: its commit, of the same few output rows as the
//!   replace's, is not included yet (issue 25 has not wired it into runs).
//!
//! `cargo bench --bench combine` (release profile); `BENCH_RUNS` sets the
//! repetitions (default 5); medians are printed.

use std::time::{Duration, Instant};

use latefill::PartitionDate;
use latefill::datagen::GenerateOptions;
use latefill::executor::combine::{combinable, combined_result};
use latefill::executor::{Pipeline, Session, SinceVersion, appended_since, run_partition};

const ROWS: usize = 5_000_000;
const LATE: usize = 5_000;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = Pipeline::default_devices(dir.path()).expect("the default pipeline");
    let source = pipeline.source.to_file_path().expect("a local source");
    let source = source.to_str().expect("a UTF-8 path");
    let day = PartitionDate::parse("2024-01-01").expect("a date");

    GenerateOptions::new(source, "2024-01-01")
        .expect("options")
        .with_rows(ROWS)
        .with_seed(1)
        .write()
        .await
        .expect("the day's rows");
    let session = Session::new();
    let processed = run_partition(&pipeline, day)
        .with_session(session.clone())
        .await
        .expect("the day processed");
    GenerateOptions::new(source, "2024-01-01")
        .expect("options")
        .with_rows(LATE)
        .with_seed(2)
        .write()
        .await
        .expect("late rows");

    // How the default transform combines, from its plan over the source.
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    let table = deltalake::open_table(pipeline.source.clone())
        .await
        .expect("the source");
    table
        .update_datafusion_session(&ctx.state())
        .expect("the source's store");
    ctx.register_table("source", table.table_provider().await.expect("a provider"))
        .expect("registered");
    let sql = pipeline.transform.as_sql().expect("a SQL transform");
    let plan = ctx.sql(sql).await.expect("a plan").into_unoptimized_plan();
    let how = combinable(&plan).expect("the default transform combines");

    let (mut replace, mut combine) = (Vec::new(), Vec::new());
    let (mut replace_rows, mut combine_rows) = (0, 0);
    for _ in 0..runs {
        let start = Instant::now();
        let run = run_partition(&pipeline, day)
            .with_session(session.clone())
            .await
            .expect("the replace");
        replace.push(start.elapsed());
        replace_rows = run.rows_written as usize;

        let start = Instant::now();
        let SinceVersion::Appended(appended) =
            appended_since(&session, &pipeline, day, processed.source_version)
                .await
                .expect("the comparison")
        else {
            panic!("only appends happened");
        };
        let combined = combined_result(&session, &pipeline, day, &appended, &how)
            .await
            .expect("the combined plan")
            .collect()
            .await
            .expect("the combined result");
        combine.push(start.elapsed());
        combine_rows = combined.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    assert_eq!(
        replace_rows, combine_rows,
        "both give the partition's groups"
    );
    let (replace, combine) = (median(replace), median(combine));
    println!(
        "{LATE} late rows into a day of {ROWS} (medians of {runs}; release build):\n\
         replace (the whole run, commit included): {:>8.1} ms\n\
         combine (appended file + target, no commit): {:>8.1} ms   {:.1}x",
        replace.as_secs_f64() * 1e3,
        combine.as_secs_f64() * 1e3,
        replace.as_secs_f64() / combine.as_secs_f64()
    );
}
