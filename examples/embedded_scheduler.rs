//! Embedding latefill in your own scheduler.
//!
//! Builds a small source table in a temporary directory, then does what a daily job
//! would: process today's partition, detect what arrived late, and backfill it, all
//! through the library's `Engine`.
//!
//! ```sh
//! cargo run --example embedded_scheduler
//! ```

use latefill::PartitionDate;
use latefill::backfill::Selection;
use latefill::datagen::GenerateOptions;
use latefill::engine::{Engine, LateHandling};
use latefill::executor::Pipeline;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let pipeline = Pipeline::default_devices(dir.path())?;
    let source = pipeline.source.as_str().to_owned();
    let engine = Engine::new(pipeline);

    // A week arrives, one day at a time; each day is processed as it lands.
    for (i, day) in (1..=7).enumerate() {
        let date = PartitionDate::parse(&format!("2024-01-{day:02}"))?;
        GenerateOptions::new(&source, &date.to_string())?
            .with_rows(5_000)
            .with_seed(i as u64)
            .write()
            .await?;
        let outcome = engine
            .run_date(date)
            .with_late(LateHandling::ReportOnly)
            .await?;
        println!(
            "{}: {} rows in, {} rows out",
            outcome.run.partition, outcome.run.rows_read, outcome.run.rows_written
        );
    }

    // Rows for two past days arrive late.
    for day in ["2024-01-02", "2024-01-05"] {
        GenerateOptions::new(&source, day)?
            .with_rows(700)
            .write()
            .await?;
    }

    // Your scheduler asks what is late, and backfills it two at a time.
    let today = PartitionDate::parse("2024-01-08")?;
    let detection = engine.detect(today).with_lookback(30).await?;
    for late in &detection.late {
        // `processed_at` is `None` for a version of a source that was since replaced.
        println!(
            "late: {} (processed at {:?}, changed at {})",
            late.partition, late.processed_at, late.last_change_version
        );
    }
    let report = engine
        .backfill(
            PartitionDate::parse("2024-01-01")?,
            PartitionDate::parse("2024-01-07")?,
        )
        .with_concurrency(2)
        .with_selection(Selection::OnlyLate)
        .await?;
    for run in &report.processed {
        println!(
            "backfilled {} at source version {}",
            run.partition, run.source_version
        );
    }
    assert_eq!(report.processed.len(), 2);

    for row in engine.status().await? {
        println!("{:<24} {:<10} late={}", row.partition, row.status, row.late);
    }
    // A state checkpoint a call left being written ends before the runtime does.
    latefill::settle().await;
    Ok(())
}
