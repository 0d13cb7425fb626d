//! Long-lived tables, through the real CLI: sources whose early commits log cleanup
//! removed (checkpoints every 10 commits, as Spark writes them), vacuumed sources,
//! sources dropped and re-created, and the state table's own upkeep.

use std::path::Path;

use latefill::datagen::GenerateOptions;

use crate::common::*;

/// Appends `rows` rows for `date` to a source that writes a checkpoint every 10
/// commits and keeps no expired log: after a checkpoint, Delta's log cleanup removes
/// every commit before it, as it does on a table older than its
/// `logRetentionDuration`.
async fn append_cleaned(ws: &Workspace, date: &str, rows: usize, seed: u64) -> u64 {
    GenerateOptions::new(ws.source_path().to_str().unwrap(), date)
        .unwrap()
        .with_rows(rows)
        .with_seed(seed)
        .with_table_property("delta.checkpointInterval", "10")
        .with_table_property("delta.logRetentionDuration", "interval 0 seconds")
        .write()
        .await
        .unwrap()
        .table_version
}

/// Asserts that every target partition in `dates` equals its recomputation.
async fn assert_target_is_recomputation(ws: &Workspace, dates: &[&str]) {
    for date in dates {
        assert_eq!(
            target_counts(&ws.target_path(), date).await,
            recomputed_counts(&ws.source_path(), date).await,
            "target partition {date} differs from a recomputation of the source"
        );
    }
}

/// The scenario of a production table: its first commits are gone.
#[tokio::test]
async fn a_source_whose_early_commits_were_cleaned_up_is_read_and_its_late_days_found() {
    let ws = Workspace::new();
    for (i, d) in ["2024-02-01", "2024-02-02", "2024-02-03"]
        .iter()
        .enumerate()
    {
        append_cleaned(&ws, d, 300, i as u64).await;
    }
    for d in ["2024-02-01", "2024-02-02", "2024-02-03"] {
        json(&ws.run_cli(&["--date", d, "--output", "json"]));
    }
    // More days and a late append to 2024-02-02 (version 8); the tenth commit
    // (version 9) writes a checkpoint, and the cleanup removes commits 0 to 8: the
    // versions the days were processed at, and the late append's, are gone.
    for (i, d) in (4..=8).map(|d| format!("2024-02-0{d}")).enumerate() {
        append_cleaned(&ws, &d, 300, 10 + i as u64).await;
    }
    assert_eq!(append_cleaned(&ws, "2024-02-02", 50, 20).await, 8);
    assert_eq!(append_cleaned(&ws, "2024-02-09", 300, 21).await, 9);
    // Cleanup compares file times with the retention: past it, Delta's cleanup
    // removes everything before the checkpoint (the commit hook may have raced it).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    deltalake::checkpoints::cleanup_metadata(&open(&ws.source_path()).await, None)
        .await
        .unwrap();
    assert_eq!(
        commit_versions(&ws.source_path()),
        [9],
        "the log was cleaned"
    );
    append_cleaned(&ws, "2024-02-10", 300, 23).await;
    // Another late append, after the gap: an exact change.
    append_cleaned(&ws, "2024-02-03", 40, 22).await;

    // Read-only commands work on it.
    let status = ws.status_json(&ws.config);
    assert_eq!(status.as_array().unwrap().len(), 10, "{status}");
    let detect = ws.detect_json(&ws.config, "2024-02-04");
    assert_eq!(
        partitions(&detect["late"]),
        ["event_time=2024-02-02", "event_time=2024-02-03"],
        "2024-02-02 changed in the lost commits (its files differ), 2024-02-03 after \
         them; 2024-02-01 did not change: {detect}"
    );
    assert_eq!(detect["late"][0]["exact"], false);
    assert_eq!(detect["late"][1]["exact"], true);

    // The day's run reprocesses exactly those two.
    let run = json(&ws.run_cli(&["--date", "2024-02-04", "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-02-02", "event_time=2024-02-03"],
        "{run}"
    );
    ws.backfill_lines(&ws.config, "2024-02-05", "2024-02-10", &[]);
    let dates: Vec<String> = (1..=10).map(|d| format!("2024-02-{d:02}")).collect();
    let dates: Vec<&str> = dates.iter().map(String::as_str).collect();
    assert_target_is_recomputation(&ws, &dates).await;

    // Nothing is late any more, and a pinned version the cleanup removed is a clear
    // data error naming the oldest readable version.
    let detect = ws.detect_json(&ws.config, "2024-02-11");
    assert_eq!(detect["late"], serde_json::json!([]), "{detect}");
    let out = ws.run_cli(&["--date", "2024-02-02", "--source-version", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("version 3 can no longer be read")
            && err.contains("oldest readable version is 9"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one message, no backtrace: {err}");

    // State rebuilt from the target, and a new pipeline on the same source.
    let state = ws.dir.path().join("state");
    std::fs::remove_dir_all(&state).unwrap();
    let rebuild = ws.latefill(&["state", "rebuild", "--config", ws.config.to_str().unwrap()]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::remove_dir_all(ws.target_path()).unwrap();
    let fresh = json(&ws.run_cli(&["--date", "2024-02-09", "--output", "json"]));
    assert_eq!(fresh["source_version"], 11);
    assert_target_is_recomputation(&ws, &["2024-02-09"]).await;
}

#[tokio::test]
async fn a_vacuumed_source_works_at_its_latest_version_and_names_the_oldest_readable_one() {
    let ws = Workspace::new();
    for seed in 0..3 {
        for d in ["2024-03-01", "2024-03-02", "2024-03-03"] {
            ws.generate(d, 200, seed).await;
        }
    }
    ws.backfill_lines(&ws.config, "2024-03-01", "2024-03-03", &[]);
    // Late rows for 2024-03-02, then OPTIMIZE compacts its four files into one and
    // VACUUM removes the four.
    let late_version = ws.generate("2024-03-02", 70, 50).await;
    let filter = [(
        "event_time",
        deltalake::FilterOp::Eq,
        deltalake::FilterValue::Scalar("2024-03-02"),
    )];
    let (table, _) = open(&ws.source_path())
        .await
        .optimize()
        .with_filters(&filter)
        .await
        .unwrap();
    let optimized_version = table.version().unwrap();
    // Past the retention of zero: the compacted files' removal is in the past.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(chrono::Duration::zero())
        .with_enforce_retention_duration(false)
        .await
        .unwrap();
    assert_eq!(metrics.files_deleted.len(), 4, "{metrics:?}");

    let run = json(&ws.run_cli(&["--date", "2024-03-04", "--allow-empty", "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-03-02"],
        "{run}"
    );
    assert_target_is_recomputation(&ws, &["2024-03-01", "2024-03-02", "2024-03-03"]).await;

    // The late version's files of 2024-03-02 are gone; the compaction's are whole.
    let pinned = late_version.to_string();
    let before = table_version(&ws.target_path()).await;
    let out = ws.run_cli(&["--date", "2024-03-02", "--source-version", &pinned]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("version {late_version} can no longer be read"))
            && err.contains("VACUUM")
            && err.contains(&format!("oldest readable version is {optimized_version}")),
        "{err}"
    );
    assert_eq!(
        table_version(&ws.target_path()).await,
        before,
        "nothing written"
    );
    // An untouched partition at the same old version still reads.
    let ok = ws.run_cli(&["--date", "2024-03-01", "--source-version", &pinned]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// Three days, each in two appends, processed; the source then dropped.
async fn processed_then_dropped(ws: &Workspace) {
    for seed in 0..2 {
        for d in ["2024-04-01", "2024-04-02", "2024-04-03"] {
            ws.generate(d, 200, seed).await;
        }
    }
    ws.backfill_lines(&ws.config, "2024-04-01", "2024-04-03", &[]);
    std::fs::remove_dir_all(ws.source_path()).unwrap();
}

#[tokio::test]
async fn a_source_recreated_with_a_shorter_log_is_recognised_and_judged_by_its_files() {
    let ws = Workspace::new();
    processed_then_dropped(&ws).await;
    // The new table: other rows for 04-01 and 04-02, none for 04-03, and 04-04. Its
    // log (versions 0..2) ends before the cursor's version 5.
    ws.generate("2024-04-01", 120, 70).await;
    ws.generate("2024-04-02", 130, 71).await;
    ws.generate("2024-04-04", 140, 72).await;

    let run = json(&ws.run_cli(&["--date", "2024-04-04", "--output", "json"]));
    assert!(
        run["detection"]["source_replaced"].is_string(),
        "the output says the source was replaced: {run}"
    );
    assert_eq!(
        partitions(&run["backfilled"]),
        [
            "event_time=2024-04-01",
            "event_time=2024-04-02",
            "event_time=2024-04-03"
        ],
        "{run}"
    );
    assert_target_is_recomputation(
        &ws,
        &["2024-04-01", "2024-04-02", "2024-04-03", "2024-04-04"],
    )
    .await;
    assert!(
        target_counts(&ws.target_path(), "2024-04-03")
            .await
            .is_empty(),
        "a day the new table lacks is emptied"
    );
    // The cursor now follows the new table: a late append is found exactly.
    ws.generate("2024-04-02", 10, 73).await;
    let run = json(&ws.run_cli(&["--date", "2024-04-05", "--allow-empty", "--output", "json"]));
    assert!(run["detection"]["source_replaced"].is_null(), "{run}");
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-04-02"],
        "{run}"
    );
    assert_target_is_recomputation(&ws, &["2024-04-02"]).await;
}

#[tokio::test]
async fn a_source_recreated_with_a_longer_log_is_not_continued_from_the_old_cursor() {
    let ws = Workspace::new();
    processed_then_dropped(&ws).await;
    // The new table's log passes the cursor's version 5: commit 5 exists, but is
    // another commit, and the commits after it alone would show only 04-02.
    for seed in 0..3 {
        ws.generate("2024-04-01", 100, 80 + seed).await;
    }
    for seed in 0..4 {
        ws.generate("2024-04-02", 100, 90 + seed).await;
    }
    let run = json(&ws.run_cli(&["--date", "2024-04-02", "--output", "json"]));
    assert!(run["detection"]["source_replaced"].is_string(), "{run}");
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-04-01"],
        "04-01 holds other files now; 04-02 was just processed: {run}"
    );
    assert_target_is_recomputation(&ws, &["2024-04-01", "2024-04-02"]).await;
}

/// Files under `dir` whose name ends with `suffix`, not descending into `_delta_log`.
fn count_files(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.ends_with(suffix)
        })
        .count()
}

/// A daily run's claim and completion are two state commits; the completion, its
/// last, would land on the state table's checkpoint version every fifth day, and the
/// process would end waiting for the checkpoint. The checkpoint is written at the
/// claim, one commit early, while the partition runs; the completion writes none.
#[tokio::test]
async fn a_daily_runs_state_checkpoint_is_written_at_its_claim() {
    let ws = Workspace::new();
    let days = ws.generate_days("2024-06", 10, 20).await;
    for d in &days {
        let out = ws.run_cli(&["--date", d]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let state = ws.dir.path().join("state");
    // A claim and a completion a day: versions 0 to 19, claims at the even ones.
    assert_eq!(table_version(&state).await, Some(19));
    let checkpoints: Vec<u64> = std::fs::read_dir(state.join("_delta_log"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".checkpoint.parquet")?.parse().ok()
        })
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .collect();
    assert_eq!(checkpoints, [8, 18], "at the claims of days 5 and 10");
}

#[tokio::test]
async fn the_state_table_checkpoints_and_cleans_up_after_itself() {
    let ws = Workspace::new();
    let text = std::fs::read_to_string(&ws.config).unwrap().replace(
        "[state]\ntable = \"state\"\n",
        "[state]\ntable = \"state\"\nretention = \"0 seconds\"\n",
    );
    std::fs::write(&ws.config, text).unwrap();
    let days: Vec<String> = (1..=112)
        .map(|i| {
            (chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap() + chrono::Days::new(i - 1))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    for (i, d) in days.iter().enumerate() {
        ws.generate(d, 20, i as u64).await;
    }
    // 112 partitions in batches of one: a commit each (a claim records the completion
    // before it), 112 commits or more, two workers reading while the table vacuums
    // itself.
    let lines = ws.backfill_lines(
        &ws.config,
        &days[0],
        &days[111],
        &["--concurrency", "2", "--batch-size", "1"],
    );
    assert!(lines.len() >= 112, "{lines:?}");

    let state = ws.dir.path().join("state");
    let version = table_version(&state).await.unwrap();
    assert!(version >= 112, "{version}");
    let commits = commit_versions(&state);
    assert!(
        commits.len() <= 20 && commits[0] >= version - 20,
        "old commits are removed at each checkpoint: {commits:?} at version {version}"
    );
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("_delta_log/_last_checkpoint")).unwrap())
            .unwrap();
    let checkpoint = last["version"].as_u64().unwrap();
    // At each tenth version, or one early where a partition is being processed (the
    // commit after it, a completion, then writes none).
    assert!(
        checkpoint % 10 >= 8 && checkpoint + 11 > version,
        "a checkpoint every tenth commit: the last at {checkpoint}, version {version}"
    );
    // Each transition writes a file (and a writer that loses a race one more, which
    // only the hourly orphan pass removes): without vacuum there would be one per
    // version or more.
    let files = count_files(&state, ".parquet");
    assert!(
        files < version as usize / 2,
        "replaced state files are vacuumed every 100 commits: {files} files at {version}"
    );
    let status = ws.status_json(&ws.config);
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 112);
    assert!(
        rows.iter().all(|r| r["status"] == "processed"
            && r["late"] == false
            && r["source_version"].is_u64()),
        "{status}"
    );
}

/// A target's expired commits are removed at its checkpoints, as Delta writers do,
/// and what is left loads and holds every partition.
#[tokio::test]
async fn the_target_log_is_cleaned_up_at_its_checkpoints() {
    let ws = Workspace::new();
    let days = ws.generate_days("2024-03", 25, 20).await;
    let first = ws.run_cli(&["--date", &days[0]]);
    assert!(first.status.success(), "{}", stderr(&first));
    // The target now keeps no expired commit.
    open(&ws.target_path())
        .await
        .set_tbl_properties()
        .with_properties(
            [(
                "delta.logRetentionDuration".to_owned(),
                "interval 0 seconds".to_owned(),
            )]
            .into(),
        )
        .await
        .unwrap();
    let lines = ws.backfill_lines(&ws.config, &days[1], &days[24], &["--batch-size", "4"]);
    let processed = lines.iter().filter(|l| l["event"] == "processed").count();
    assert_eq!(processed, 24, "{lines:?}");

    let version = table_version(&ws.target_path()).await.unwrap();
    assert!(version >= 25, "{version}");
    let latest_checkpoint = version - (version + 1) % 10;
    let commits = commit_versions(&ws.target_path());
    assert_eq!(
        commits.first(),
        Some(&latest_checkpoint),
        "commits before the latest checkpoint are removed: {commits:?}"
    );
    let refs: Vec<&str> = days.iter().map(String::as_str).collect();
    assert_target_is_recomputation(&ws, &refs).await;
}

/// The target's checkpoints are written while the next partitions run, and the
/// backfill waits for them: the last one due is there when it exits.
#[tokio::test]
async fn a_backfill_exits_with_its_targets_checkpoints_written() {
    let ws = Workspace::new();
    let days = ws.generate_days("2024-03", 20, 20).await;
    let lines = ws.backfill_lines(&ws.config, &days[0], &days[19], &["--concurrency", "2"]);
    let processed = lines.iter().filter(|l| l["event"] == "processed").count();
    assert_eq!(processed, 20, "{lines:?}");

    // A commit a partition, or one for the two runs that finished together: 10 to
    // 20 commits. Every checkpoint due is written, the last one due before it exits.
    let version = table_version(&ws.target_path()).await.unwrap();
    assert!((10..=19).contains(&version), "{version}");
    let log = ws.target_path().join("_delta_log");
    let due: Vec<u64> = (0..=version).filter(|v| v % 10 == 9).collect();
    for v in &due {
        assert!(
            log.join(format!("{v:020}.checkpoint.parquet")).exists(),
            "no checkpoint at version {v} of {version}"
        );
    }
    let hint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(log.join("_last_checkpoint")).unwrap()).unwrap();
    assert_eq!(
        hint["version"],
        *due.last().unwrap(),
        "at version {version}"
    );
}

/// A program that embeds the engine goes on after a backfill: its later runs, which
/// start from the target as the backfill left it (the last checkpoint written, the
/// table not loaded from it again), replace exactly their partitions.
#[tokio::test]
async fn an_embedded_engine_goes_on_after_a_backfill_that_checkpointed_its_target() {
    use latefill::PartitionDate;
    let ws = Workspace::new();
    let days = ws.generate_days("2024-03", 20, 20).await;
    let date = |d: &str| PartitionDate::parse(d).unwrap();
    let engine = latefill::Engine::new(ws.pipeline());
    let report = engine
        .backfill(date(&days[0]), date(&days[19]))
        .with_concurrency(2)
        .await
        .unwrap();
    assert_eq!(report.processed.len(), 20, "{report:?}");
    // A commit a partition, or one for the runs that finished together: the last
    // checkpoint due (every 10 versions) is written.
    let version = table_version(&ws.target_path()).await.unwrap();
    assert!((9..=19).contains(&version), "{version}");
    let log = ws.target_path().join("_delta_log");
    let last_due = version - (version + 1) % 10;
    assert!(
        log.join(format!("{last_due:020}.checkpoint.parquet"))
            .exists(),
        "no checkpoint at {last_due} of {version}"
    );

    // Late rows in three days, then the next day: one run finds and redoes them.
    for (i, d) in [&days[2], &days[11], &days[19]].into_iter().enumerate() {
        ws.generate(d, 7, 100 + i as u64).await;
    }
    ws.generate("2024-03-21", 20, 99).await;
    let outcome = engine.run_date(date("2024-03-21")).await.unwrap();
    let mut redone: Vec<&str> = outcome
        .backfilled
        .iter()
        .map(|r| r.partition.as_str())
        .collect();
    redone.sort();
    assert_eq!(
        redone,
        [
            "event_time=2024-03-03",
            "event_time=2024-03-12",
            "event_time=2024-03-20"
        ]
    );
    let mut all: Vec<&str> = days.iter().map(String::as_str).collect();
    all.push("2024-03-21");
    assert_target_is_recomputation(&ws, &all).await;
}

/// Rows of `(type, event_time)`, and `region` when given, for a source whose schema
/// grows.
fn typed_rows(
    kinds: &[&str],
    date: &str,
    region: Option<&str>,
) -> deltalake::arrow::array::RecordBatch {
    use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let text = |v: Vec<&str>| std::sync::Arc::new(StringArray::from(v)) as ArrayRef;
    let mut fields = vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("event_time", DataType::Utf8, true),
    ];
    let mut columns = vec![text(kinds.to_vec()), text(vec![date; kinds.len()])];
    if let Some(region) = region {
        fields.push(Field::new("region", DataType::Utf8, true));
        columns.push(text(vec![region; kinds.len()]));
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).unwrap()
}

/// The checks made before a claim read the tables the process keeps, as they are: a
/// source kept from before a new column was added must not refuse SQL that uses it
/// (the refusal is checked again on the latest tables).
#[tokio::test]
async fn a_source_kept_from_before_its_schema_grew_does_not_refuse_sql_using_the_new_column() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("events");
    append_batch(
        &source,
        typed_rows(&["a", "b"], "2024-01-01", None),
        &["event_time"],
    )
    .await;
    let pipeline = |target: &str, sql: &str| {
        latefill::executor::Pipeline::from_toml(
            &format!(
                "name = \"{target}\"\n\
                 [source]\ntable = \"events\"\npartition_column = \"event_time\"\n\
                 [target]\ntable = \"{target}\"\n[state]\ntable = \"state_{target}\"\n\
                 [transform]\nsql = \"{sql}\"\n"
            ),
            dir.path(),
        )
        .unwrap()
    };
    let by_type = pipeline(
        "by_type",
        "SELECT type, count(*) AS n, event_time FROM source GROUP BY type, event_time",
    );
    let day = |d: &str| latefill::PartitionDate::parse(d).unwrap();
    latefill::Engine::new(by_type)
        .run_date(day("2024-01-01"))
        .await
        .unwrap();

    // Another writer adds a column, in a row for the next day.
    deltalake::DeltaTable::try_from_url(url_of(&source))
        .await
        .unwrap()
        .write(vec![typed_rows(&["a"], "2024-01-02", Some("eu"))])
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
        .await
        .unwrap();
    let by_region = pipeline(
        "by_region",
        "SELECT region, count(*) AS n, event_time FROM source GROUP BY region, event_time",
    );
    let outcome = latefill::Engine::new(by_region)
        .run_date(day("2024-01-02"))
        .await
        .unwrap();
    assert_eq!(outcome.run.rows_written, 1);
}
