//! Late rows merged instead of the whole day recomputed, through the CLI: which
//! strategy each command shows and each run uses, and the histories where an update
//! from late rows would be wrong (a delete, a compaction, a cleaned-up log, another
//! SQL), which must recompute.

use crate::common::*;

const DAY: &str = "2024-01-01";

/// A workspace whose `DAY` holds 5,000 rows and was processed, then 200 late rows.
async fn processed_then_late(ws: &Workspace) -> u64 {
    ws.generate(DAY, 5_000, 1).await;
    let out = ws.run_cli(&["--date", DAY]);
    assert!(out.status.success(), "{}", stderr(&out));
    ws.generate(DAY, 200, 2).await
}

async fn assert_target_is_recomputation(ws: &Workspace) {
    assert_eq!(
        target_counts(&ws.target_path(), DAY).await,
        recomputed_counts(&ws.source_path(), DAY).await,
        "the target differs from a recomputation"
    );
}

/// The first late run of `DAY`, from `run --date 2024-01-02`: its one backfilled
/// report.
fn late_run(ws: &Workspace, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--date", "2024-01-02", "--allow-empty", "--output", "json"];
    args.extend_from_slice(extra);
    let run = json(&ws.run_cli(&args));
    assert_eq!(
        partitions(&run["backfilled"]),
        [format!("event_time={DAY}")],
        "{run}"
    );
    run["backfilled"][0].clone()
}

/// `detect`, `run --no-backfill` and `backfill --dry-run` say which strategy will
/// run, why and what each reads, and change nothing; the run then does what they
/// said, reading the late rows only.
#[tokio::test]
async fn every_command_shows_the_strategy_and_the_run_uses_it() {
    let ws = Workspace::new();
    let late_version = processed_then_late(&ws).await;
    let state_version = table_version(&ws.dir.path().join("state")).await;
    let target_version = table_version(&ws.target_path()).await;

    let detect = ws.detect_json(&ws.config, "2024-01-02");
    let choice = &detect["late"][0]["strategy"];
    assert_eq!(choice["strategy"], "incremental", "{detect}");
    assert_eq!(choice["replace"]["rows"], 5_200, "{detect}");
    assert!(
        choice["incremental"]["bytes"].as_u64() < choice["replace"]["bytes"].as_u64(),
        "{detect}"
    );
    let text = stdout(&ws.latefill(&[
        "detect",
        "--config",
        ws.config.to_str().unwrap(),
        "--date",
        "2024-01-02",
    ]));
    assert!(
        text.contains("incremental: update from the late rows"),
        "{text}"
    );

    let lines = ws.backfill_lines(&ws.config, DAY, DAY, &["--dry-run"]);
    assert_eq!(lines[0]["event"], "would-process", "{lines:?}");
    assert_eq!(lines[0]["why"], "late", "{lines:?}");
    assert_eq!(lines[0]["strategy"]["strategy"], "incremental", "{lines:?}");
    assert_eq!(lines[1]["dry_run"], true, "{lines:?}");

    let report = json(&ws.run_cli(&[
        "--date",
        "2024-01-02",
        "--allow-empty",
        "--no-backfill",
        "--output",
        "json",
    ]));
    assert_eq!(
        report["late"][0]["strategy"]["strategy"], "incremental",
        "{report}"
    );
    // Nothing of the late partition was written by those commands (the last one
    // processed its own date only).
    assert!(table_version(&ws.dir.path().join("state")).await > state_version);
    assert_eq!(
        table_version(&ws.target_path()).await,
        target_version.map(|v| v + 1),
        "only 2024-01-02 was written"
    );

    let run = late_run(&ws, &[]);
    assert_eq!(run["strategy"], "incremental", "{run}");
    assert_eq!(run["rows_read"], 200, "{run}");
    assert_eq!(run["source_version"], late_version, "{run}");
    assert_target_is_recomputation(&ws).await;
    let status = ws.status_json(&ws.config);
    assert!(late_partitions(&status).is_empty(), "{status}");
}

/// `--strategy replace`, and `transform.strategy = "replace"` in the pipeline file,
/// recompute; a strategy that does not exist is a usage error naming both.
#[tokio::test]
async fn replace_is_forced_from_the_command_line_or_the_pipeline_file() {
    let ws = Workspace::new();
    processed_then_late(&ws).await;
    let run = late_run(&ws, &["--strategy", "replace"]);
    assert_eq!(run["strategy"], "replace", "{run}");
    assert_eq!(run["rows_read"], 5_200, "{run}");
    assert!(
        run["strategy_reason"]
            .as_str()
            .unwrap()
            .contains("asked for"),
        "{run}"
    );
    assert_target_is_recomputation(&ws).await;

    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(
        &ws.config,
        text.replace("[transform]\n", "[transform]\nstrategy = \"replace\"\n"),
    )
    .unwrap();
    ws.generate(DAY, 100, 3).await;
    let run = json(&ws.run_cli(&["--date", "2024-01-03", "--allow-empty", "--output", "json"]));
    assert_eq!(run["backfilled"][0]["strategy"], "replace", "{run}");
    assert_target_is_recomputation(&ws).await;

    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, text.replace("\"replace\"", "\"merge\"")).unwrap();
    let out = ws.run_cli(&["--date", "2024-01-04", "--allow-empty"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("transform.strategy") && err.contains("\"merge\""),
        "{err}"
    );
    assert!(
        err.contains("\"auto\"") && err.contains("\"replace\""),
        "{err}"
    );
}

/// A delete after a late append, a compaction of late appends, and a log cleaned up
/// past the processed version: none is only appends since the processed version, so
/// each late run recomputes, says why, and the target equals the source.
#[tokio::test]
async fn histories_that_are_not_appends_are_recomputed() {
    // A delete after the late append.
    let ws = Workspace::new();
    processed_then_late(&ws).await;
    delete_where(
        &ws.source_path(),
        "event_time = '2024-01-01' AND type = 'galaxy'",
    )
    .await;
    let run = late_run(&ws, &[]);
    assert_eq!(run["strategy"], "replace", "{run}");
    assert!(
        run["strategy_reason"].as_str().unwrap().contains("removed"),
        "{run}"
    );
    assert_target_is_recomputation(&ws).await;

    // Late appends, then a compaction of the day (its rows unchanged).
    let ws = Workspace::new();
    processed_then_late(&ws).await;
    ws.generate(DAY, 300, 3).await;
    let (_, metrics) = open(&ws.source_path()).await.optimize().await.unwrap();
    assert!(metrics.num_files_removed >= 3, "{metrics:?}");
    let run = late_run(&ws, &[]);
    assert_eq!(run["strategy"], "replace", "{run}");
    assert!(
        run["strategy_reason"]
            .as_str()
            .unwrap()
            .contains("compaction"),
        "{run}"
    );
    assert_target_is_recomputation(&ws).await;

    // A late append, then a checkpoint and the commits before it removed (as log
    // cleanup does): the version the day was processed at cannot be loaded.
    let ws = Workspace::new();
    processed_then_late(&ws).await;
    ws.generate("2024-01-05", 50, 5).await;
    checkpoint_and_clean_up_log(&ws.source_path()).await;
    let run = late_run(&ws, &[]);
    assert_eq!(run["strategy"], "replace", "{run}");
    assert!(
        run["strategy_reason"]
            .as_str()
            .unwrap()
            .contains("can no longer be read"),
        "{run}"
    );
    assert_target_is_recomputation(&ws).await;
}

/// A compaction (OPTIMIZE) after the day was processed changes no rows: the day is
/// not late, and no run rewrites it.
#[tokio::test]
async fn a_compaction_alone_is_nothing_to_do() {
    let ws = Workspace::new();
    ws.generate(DAY, 2_000, 1).await;
    ws.generate(DAY, 2_000, 2).await;
    let out = ws.run_cli(&["--date", DAY]);
    assert!(out.status.success(), "{}", stderr(&out));
    let target_version = table_version(&ws.target_path()).await;
    let (_, metrics) = open(&ws.source_path()).await.optimize().await.unwrap();
    assert_eq!(metrics.num_files_removed, 2, "{metrics:?}");
    let detect = ws.detect_json(&ws.config, "2024-01-02");
    assert!(detect["late"].as_array().unwrap().is_empty(), "{detect}");
    let run = json(&ws.run_cli(&["--date", "2024-01-02", "--allow-empty", "--output", "json"]));
    assert!(run["backfilled"].as_array().unwrap().is_empty(), "{run}");
    assert_eq!(
        table_version(&ws.target_path()).await,
        target_version.map(|v| v + 1),
        "only 2024-01-02 was written"
    );
}

/// A transform whose result cannot be combined (an average) is recomputed, and the
/// reason names the aggregate.
#[tokio::test]
async fn a_transform_that_does_not_combine_is_recomputed_and_says_why() {
    let ws = Workspace::with_sql(
        "SELECT type, avg(length(full_name)) AS letters, count(*) AS devices, event_time \
         FROM source GROUP BY type, event_time",
    );
    processed_then_late(&ws).await;
    let detect = ws.detect_json(&ws.config, "2024-01-02");
    let choice = &detect["late"][0]["strategy"];
    assert_eq!(choice["strategy"], "replace", "{detect}");
    assert!(
        choice["reason"]
            .as_str()
            .unwrap()
            .contains("avg is not combinable"),
        "{detect}"
    );
    let run = late_run(&ws, &[]);
    assert_eq!(run["strategy"], "replace", "{run}");
    assert_eq!(run["rows_read"], 5_200, "{run}");
}

/// Appends `rows` rows of `DAY` with unique ids from `first` to the source.
async fn append_ids(ws: &Workspace, first: i64, rows: i64) {
    use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
        Field::new("event_time", DataType::Utf8, false),
    ]);
    let ids = first..first + rows;
    let batch = RecordBatch::try_new(
        std::sync::Arc::new(schema),
        vec![
            std::sync::Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("id-{i:08}")),
            )),
            std::sync::Arc::new(Int64Array::from_iter_values(ids.map(|i| i % 97))),
            std::sync::Arc::new(StringArray::from(vec![DAY; rows as usize])),
        ],
    )
    .unwrap();
    append_batch(&ws.source_path(), batch, &["event_time"]).await;
}

/// A transform that hardly aggregates (a group per id) leaves a target as large as
/// the source: `auto` recomputes, saying the update would read more, and
/// `incremental` updates anyway, with the same result.
#[tokio::test]
async fn auto_recomputes_where_the_update_would_read_more() {
    let sql = "SELECT id, count(*) AS n, sum(v) AS total, event_time \
               FROM source GROUP BY id, event_time";
    let mut targets = Vec::new();
    for (strategy, expected) in [("auto", "replace"), ("incremental", "incremental")] {
        let ws = Workspace::with_sql(sql);
        append_ids(&ws, 0, 5_000).await;
        let out = ws.run_cli(&["--date", DAY]);
        assert!(out.status.success(), "{}", stderr(&out));
        append_ids(&ws, 4_900, 300).await; // 100 ids seen before, 200 new
        let run = late_run(&ws, &["--strategy", strategy]);
        assert_eq!(run["strategy"], expected, "{strategy}: {run}");
        if expected == "replace" {
            let reason = run["strategy_reason"].as_str().unwrap();
            assert!(reason.contains("an update would read"), "{reason}");
        } else {
            assert_eq!(run["rows_read"], 300, "{run}");
        }
        let batches = query(&ws.target_path(), "ORDER BY id").await;
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5_200);
        targets.push(
            deltalake::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string(),
        );
        targets.push(
            deltalake::arrow::util::pretty::pretty_format_batches(
                &sql_on(
                    &url_of(&ws.source_path()),
                    "SELECT id, count(*) AS n, sum(v) AS total, event_time FROM t \
                     GROUP BY id, event_time ORDER BY id",
                )
                .await,
            )
            .unwrap()
            .to_string(),
        );
    }
    // Each target equals its recomputation, and both are the same.
    assert_eq!(
        targets[0], targets[1],
        "auto (replace) against a recomputation"
    );
    assert_eq!(
        targets[2], targets[3],
        "incremental against a recomputation"
    );
    assert_eq!(targets[0], targets[2]);
}
