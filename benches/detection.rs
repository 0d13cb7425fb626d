//! Detection on a long history: a source table with 3,650 daily partitions and 20,000
//! commits, checkpointed every 100 commits by delta-rs (as Delta writers do).
//!
//! Times, with the data prepared outside the timed part:
//! - cold detection (no cursor: every commit since the start is read);
//! - incremental detection after 10 new commits (library call, from a cursor);
//! - the same through the whole `latefill detect` process (state table read, cursor,
//!   planning, process start and exit).
//!
//! `cargo bench --bench detection` (release profile); `BENCH_DIR` keeps the generated
//! table between runs (default: target/bench-data), `BENCH_RUNS` sets the repetitions.
//! The last line is JSON, for `scripts/bench.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use latefill::detector::detect_changes;
use rand::{RngExt, SeedableRng};
use url::Url;

const PARTITIONS: u64 = 3_650;
const COMMITS: u64 = 20_000;
const CHECKPOINT_EVERY: u64 = 100;
/// Share of commits that append to an old day (late data); the rest go to recent days.
const LATE_SHARE: f64 = 0.2;

fn day(i: u64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2015, 1, 1).expect("a date");
    (start + chrono::Days::new(i))
        .format("%Y-%m-%d")
        .to_string()
}

fn add_line(version: u64, partition_day: u64) -> String {
    let d = day(partition_day);
    serde_json::json!({"add": {
        "path": format!("event_time={d}/part-{version:05}.parquet"),
        "partitionValues": {"event_time": d},
        "size": 4096, "modificationTime": 1_700_000_000_000u64 + version,
        "dataChange": true, "stats": "{\"numRecords\":1000}"
    }})
    .to_string()
}

fn write_commit(log: &Path, version: u64, lines: &[String]) {
    let info = serde_json::json!({"commitInfo": {"timestamp": 1_700_000_000_000u64 + version,
        "operation": "WRITE", "operationParameters": {"mode": "Append"}}});
    let mut text = info.to_string();
    for l in lines {
        text.push('\n');
        text.push_str(l);
    }
    text.push('\n');
    std::fs::write(log.join(format!("{version:020}.json")), text).expect("write a commit");
}

/// The partition a commit appends to: mostly the last week before "today" (which
/// moves through the ten years as commits go), a share to any older day.
fn partition_of(rng: &mut rand_chacha::ChaCha8Rng, version: u64) -> u64 {
    let today = (version * PARTITIONS / COMMITS).max(1);
    if rng.random_bool(LATE_SHARE) {
        rng.random_range(0..today)
    } else {
        today.saturating_sub(rng.random_range(0..7.min(today + 1)))
    }
}

async fn prepare(dir: &Path) -> Url {
    let table = dir.join("devices");
    let url = Url::from_directory_path(&table).expect("a directory URL");
    let marker = dir.join("complete");
    if marker.exists() {
        return url;
    }
    let _ = std::fs::remove_dir_all(&table);
    let log = table.join("_delta_log");
    std::fs::create_dir_all(&log).expect("create the log");
    let schema = serde_json::json!({"type": "struct", "fields": [
        {"name": "type", "type": "string", "nullable": true, "metadata": {}},
        {"name": "full_name", "type": "string", "nullable": true, "metadata": {}},
        {"name": "version", "type": "string", "nullable": true, "metadata": {}},
        {"name": "event_time", "type": "string", "nullable": true, "metadata": {}}]});
    let protocol = serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}});
    let metadata = serde_json::json!({"metaData": {
        "id": "00000000-0000-0000-0000-000000000001", "format": {"provider": "parquet", "options": {}},
        "schemaString": schema.to_string(), "partitionColumns": ["event_time"],
        "configuration": {}, "createdTime": 1_700_000_000_000u64}});
    write_commit(
        &log,
        0,
        &[protocol.to_string(), metadata.to_string(), add_line(0, 0)],
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    for version in 1..COMMITS {
        let p = partition_of(&mut rng, version);
        write_commit(&log, version, &[add_line(version, p)]);
        if version % CHECKPOINT_EVERY == 0 {
            let table = deltalake::open_table_with_version(url.clone(), version)
                .await
                .expect("load for a checkpoint");
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .expect("write a checkpoint");
        }
    }
    std::fs::write(&marker, "").expect("mark complete");
    url
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let dir = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or("target".into(), PathBuf::from);
            target.join("bench-data/detection")
        });
    std::fs::create_dir_all(&dir).expect("bench dir");
    let dir = dir.canonicalize().expect("an absolute bench dir");
    let started = Instant::now();
    let url = prepare(&dir).await;
    eprintln!(
        "prepared {} in {:.1} s",
        url,
        started.elapsed().as_secs_f64()
    );

    // A run that died before removing its ten extra commits left them behind.
    let log = url.to_file_path().expect("a path").join("_delta_log");
    for v in COMMITS..COMMITS + 10 {
        let _ = std::fs::remove_file(log.join(format!("{v:020}.json")));
    }

    // Cold: no cursor, the whole log.
    let mut cold = Vec::new();
    let mut changes = None;
    for _ in 0..runs {
        let t = Instant::now();
        changes = Some(detect_changes(&url).await.expect("cold detection"));
        cold.push(t.elapsed());
    }
    let changes = changes.expect("at least one run");
    assert_eq!(changes.table_version, COMMITS - 1);
    let cursor = changes.cursor().cloned();

    // Ten new commits after the cursor (removed again at the end).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for v in COMMITS..COMMITS + 10 {
        let p = partition_of(&mut rng, v);
        write_commit(&log, v, &[add_line(v, p)]);
    }
    let mut incremental = Vec::new();
    for _ in 0..runs.max(10) {
        let t = Instant::now();
        let next = detect_changes(&url)
            .with_cursor(cursor.clone())
            .await
            .expect("incremental detection");
        incremental.push(t.elapsed());
        assert_eq!(next.scan.commits_read, 10);
    }

    // The whole process: `latefill detect` with the cursor in its state table.
    let process = whole_process(&dir, &url, &log).await;

    for v in COMMITS..COMMITS + 10 {
        let _ = std::fs::remove_file(log.join(format!("{v:020}.json")));
    }
    let (cold, incremental) = (median(cold), median(incremental));
    println!(
        "detection on {PARTITIONS} partitions, {COMMITS} commits, checkpoint every {CHECKPOINT_EVERY}"
    );
    println!(
        "  cold detection (no cursor):              {:>9.1} ms",
        ms(cold)
    );
    println!(
        "  incremental, 10 new commits (library):   {:>9.2} ms",
        ms(incremental)
    );
    println!(
        "  incremental, 10 new commits (process):   {:>9.1} ms",
        ms(process)
    );
    println!(
        "{}",
        serde_json::json!({
            "cold_ms": ms(cold), "incremental_ms": ms(incremental),
            "incremental_process_ms": ms(process), "runs": runs,
        })
    );
}

/// Median wall time of `latefill detect` after 10 new commits, from a cursor saved in
/// its state table before them (restored each time, though `detect` writes nothing).
async fn whole_process(dir: &Path, url: &Url, log: &Path) -> Duration {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_latefill"));
    let work = dir.join("process");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let config = work.join("pipeline.toml");
    let text = latefill::executor::DEFAULT_PIPELINE_TOML
        .replace("latefill-demo/devices\"", &format!("{}\"", url.as_str()))
        .replace("latefill-demo/", "");
    std::fs::write(&config, text).expect("pipeline");
    let detect = || {
        Command::new(&bin)
            .args(["detect", "--config"])
            .arg(&config)
            .args(["--date", "2030-01-01", "--output", "json"])
            .output()
            .expect("latefill runs")
    };
    // Hide the 10 new commits, save a cursor at the table's end, then show them again.
    let hidden = work.join("hidden");
    std::fs::create_dir_all(&hidden).expect("hidden");
    for v in COMMITS..COMMITS + 10 {
        let name = format!("{v:020}.json");
        std::fs::rename(log.join(&name), hidden.join(&name)).expect("hide");
    }
    // `detect` only reads; a backfill that plans late partitions saves the cursor.
    let first = Command::new(&bin)
        .args(["backfill", "--config"])
        .arg(&config)
        .args(["--from", "2030-01-01", "--to", "2030-01-01", "--only-late"])
        .output()
        .expect("latefill runs");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for v in COMMITS..COMMITS + 10 {
        let name = format!("{v:020}.json");
        std::fs::rename(hidden.join(&name), log.join(&name)).expect("show");
    }
    let state = work.join("latefill_state");
    let saved = work.join("state-at-cursor");
    copy_dir(&state, &saved);
    let mut times = Vec::new();
    for _ in 0..10 {
        let _ = std::fs::remove_dir_all(&state);
        copy_dir(&saved, &state);
        let t = Instant::now();
        let out = detect();
        times.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["detection"]["mode"], "cursor", "{json}");
        assert_eq!(json["detection"]["commits_read"], 10, "{json}");
    }
    median(times)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
