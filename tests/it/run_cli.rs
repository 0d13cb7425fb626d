//! `latefill run` through the binary: JSON output, exit codes, and bad input that
//! writes nothing.

use crate::common::*;

#[tokio::test]
async fn json_output_is_one_object_with_the_run_figures() {
    let ws = Workspace::new();
    let version = ws.generate("2024-01-03", 2_500, 9).await;
    let out = ws.run_cli(&["--date", "2024-01-03", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["partition"], "event_time=2024-01-03");
    assert_eq!(json["source_version"], version);
    assert_eq!(json["rows_read"], 2_500);
    let groups = expected_counts("2024-01-03", &[(2_500, 9)]).len();
    assert_eq!(json["rows_written"], groups);
    assert_eq!(
        json["target_version"],
        table_version(&ws.target_path()).await.unwrap()
    );
    assert!(json["duration_ms"].is_u64());
}

/// Runs `latefill run` with `args`, asserting the exit code, a message naming the
/// problem, and that the target did not change.
async fn assert_rejected(ws: &Workspace, args: &[&str], code: i32, needles: &[&str]) {
    let before = table_version(&ws.target_path()).await;
    let out = ws.run_cli(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "args {args:?}: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "args {args:?}: {needle:?} not in {err}"
        );
    }
    assert_eq!(
        table_version(&ws.target_path()).await,
        before,
        "args {args:?} wrote"
    );
}

#[tokio::test]
async fn a_malformed_date_is_a_usage_error() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    for bad in ["2024-1-3", "2024-02-30", "tomorrow"] {
        assert_rejected(&ws, &["--date", bad], 2, &[bad, "YYYY-MM-DD"]).await;
    }
}

#[tokio::test]
async fn a_missing_config_file_is_a_usage_error() {
    let ws = Workspace::new();
    let out = ws.latefill(&["run", "--config", "nope.toml", "--date", "2024-01-03"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));
    assert!(stderr(&out).contains("latefill init"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_missing_source_table_is_a_data_error() {
    let ws = Workspace::new();
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &["no Delta table at source", "devices"],
    )
    .await;
    assert!(!ws.target_path().exists());
}

#[tokio::test]
async fn a_partition_without_data_is_a_data_error_unless_allowed() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    assert!(ws.run_cli(&["--date", "2024-01-03"]).status.success());
    assert_rejected(
        &ws,
        &["--date", "2024-01-04"],
        3,
        &[
            "no data in partition event_time=2024-01-04",
            "--allow-empty",
        ],
    )
    .await;
    let before = table_version(&ws.target_path()).await.unwrap();
    let out = ws.run_cli(&["--date", "2024-01-04", "--allow-empty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(table_version(&ws.target_path()).await, Some(before + 1));
}

#[tokio::test]
async fn a_source_version_that_does_not_exist_is_a_data_error() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    assert_rejected(
        &ws,
        &["--date", "2024-01-03", "--source-version", "7"],
        3,
        &["no version 7", "latest is 0"],
    )
    .await;
    assert_rejected(
        &ws,
        &["--date", "2024-01-03", "--source-version", "-1"],
        2,
        &["'-1'"],
    )
    .await;
}

#[tokio::test]
async fn sql_that_does_not_parse_is_a_data_error() {
    let ws = Workspace::with_sql("SELEC type FROM source");
    ws.generate("2024-01-03", 100, 1).await;
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &["transform SQL is invalid", "SELEC"],
    )
    .await;
}

#[tokio::test]
async fn sql_naming_an_unknown_column_is_a_data_error() {
    let ws = Workspace::with_sql(
        "SELECT colour, count(*) AS n, event_time FROM source GROUP BY colour, event_time",
    );
    ws.generate("2024-01-03", 100, 1).await;
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &["transform SQL is invalid", "colour"],
    )
    .await;
}

#[tokio::test]
async fn sql_that_drops_the_partition_column_is_a_data_error() {
    let ws = Workspace::with_sql("SELECT type, count(*) AS n FROM source GROUP BY type");
    ws.generate("2024-01-03", 100, 1).await;
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &["no column \"event_time\""],
    )
    .await;
}

#[tokio::test]
async fn a_result_that_does_not_match_the_target_is_a_data_error() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    assert!(ws.run_cli(&["--date", "2024-01-03"]).status.success());
    // Same target, other result shape: `devices` becomes a string.
    let text = std::fs::read_to_string(&ws.config).unwrap().replace(
        "count(*) AS devices",
        "CAST(count(*) AS VARCHAR) AS devices",
    );
    std::fs::write(&ws.config, text).unwrap();
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &["does not match target", "devices"],
    )
    .await;

    // And a missing column.
    let text = std::fs::read_to_string(&ws.config)
        .unwrap()
        .replace("CAST(count(*) AS VARCHAR) AS devices", "count(*) AS n");
    std::fs::write(&ws.config, text).unwrap();
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &["does not match target", "\"n\""],
    )
    .await;
}

#[tokio::test]
async fn json_errors_carry_the_kind_and_exit_code() {
    let ws = Workspace::new();
    let out = ws.run_cli(&["--date", "2024-01-03", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["error"]["kind"], "data");
    assert_eq!(json["error"]["exit_code"], 3);
}

#[test]
fn init_writes_a_pipeline_that_run_accepts_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = latefill_in(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(dir.path().join("latefill.toml")).unwrap();
    assert_eq!(written, latefill::executor::DEFAULT_PIPELINE_TOML);
    let again = latefill_in(dir.path(), &["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"));
}

#[test]
fn demo_tells_the_late_data_story_and_runs_again_over_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = latefill_in(dir.path(), &["demo", "--output", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let events = json["events"].as_array().unwrap();
        let of = |kind: &'static str| events.iter().filter(move |e| e["step"] == kind);

        let days: Vec<_> = of("day").collect();
        assert_eq!(days.len(), 7);
        for (i, d) in days.iter().enumerate() {
            assert_eq!(d["date"], format!("2024-01-0{}", i + 1));
            assert_eq!(d["run"]["source_version"], i);
            assert!(d["rows_generated"].as_u64().unwrap() > 0, "{d}");
            assert_eq!(d["run"]["rows_read"], d["rows_generated"]);
        }
        let rerun = of("rerun").next().unwrap();
        let names = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|l| l["partition"].as_str().unwrap().to_owned())
                .collect()
        };
        let late = ["event_time=2024-01-02", "event_time=2024-01-03"];
        assert_eq!(names(&rerun["outcome"]["late"]), late);
        assert_eq!(names(&rerun["outcome"]["backfilled"]), late);
        assert_eq!(rerun["matches_full_recomputation"], true);
        let detect = of("detect").next().unwrap();
        assert_eq!(names(&detect["late"]), ["event_time=2024-01-02"]);
        assert_eq!(of("status").count(), 4);
    }
    // After the demo, `run` with no --config works on the demo's tables.
    let out = latefill_in(
        dir.path(),
        &["run", "--date", "2024-01-05", "--output", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A directory the demo did not make is left alone.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join("latefill-demo")).unwrap();
    std::fs::write(other.path().join("latefill-demo/keep.txt"), "mine").unwrap();
    let out = latefill_in(other.path(), &["demo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(other.path().join("latefill-demo/keep.txt").exists());
}

#[tokio::test]
async fn logs_go_to_stderr_and_json_stays_clean_on_stdout() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    let config = ws.config.to_str().unwrap();
    let verbose = ws.latefill(&[
        "-v",
        "run",
        "--config",
        config,
        "--date",
        "2024-01-03",
        "--output",
        "json",
    ]);
    assert!(verbose.status.success(), "{}", stderr(&verbose));
    let json: serde_json::Value = serde_json::from_str(stdout(&verbose).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", stdout(&verbose)));
    assert_eq!(json["partition"], "event_time=2024-01-03");
    let log = stderr(&verbose);
    for event in ["claimed", "processed", "read the log"] {
        assert!(log.contains(event), "-v logs {event:?}: {log}");
    }
    let quiet = ws.latefill(&["-q", "run", "--config", config, "--date", "2024-01-03"]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(stderr(&quiet), "", "-q logs nothing on success");
}

/// Replaces `from` with `to` in the workspace's pipeline file.
fn edit_config(ws: &Workspace, from: &str, to: &str) {
    let text = std::fs::read_to_string(&ws.config).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&ws.config, text.replace(from, to)).unwrap();
}

/// Lists the parquet files under `dir`, recursively.
fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            found.push(path);
        }
    }
    found
}

/// A run replaces one partition: SQL whose rows belong to another date would write
/// into a partition the run does not own. Both ways of writing refuse it: delta-rs's
/// write (the first run, which creates the target) and latefill's own (later runs).
#[tokio::test]
async fn a_result_row_of_another_date_is_a_data_error_and_writes_nothing() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    ws.generate("2024-01-04", 100, 2).await;
    edit_config(
        &ws,
        "count(*) AS devices, event_time FROM source GROUP BY type, version, event_time",
        "count(*) AS devices, '2024-01-05' AS event_time FROM source GROUP BY type, version",
    );
    // No target yet: delta-rs's write creates it, and refuses.
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &["event_time=2024-01-03"],
    )
    .await;
    assert_eq!(table_version(&ws.target_path()).await, None);

    // A target with 2024-01-04 in it, then the same SQL: latefill's write refuses,
    // names the row, and leaves the target and its directory as they were.
    edit_config(
        &ws,
        "'2024-01-05' AS event_time FROM source GROUP BY type, version",
        "event_time FROM source GROUP BY type, version, event_time",
    );
    assert!(ws.run_cli(&["--date", "2024-01-04"]).status.success());
    let files = parquet_files(&ws.target_path());
    edit_config(
        &ws,
        "event_time FROM source GROUP BY type, version, event_time",
        "'2024-01-05' AS event_time FROM source GROUP BY type, version",
    );
    assert_rejected(
        &ws,
        &["--date", "2024-01-03"],
        3,
        &[
            "outside partition event_time=2024-01-03",
            "event_time = 2024-01-05",
        ],
    )
    .await;
    assert_eq!(parquet_files(&ws.target_path()), files);
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-04").await,
        expected_counts("2024-01-04", &[(100, 2)])
    );
    assert!(
        target_counts(&ws.target_path(), "2024-01-05")
            .await
            .is_empty()
    );
}

/// A column the target declares non-null (the first run's `count(*)`) takes no null
/// from a later run.
#[tokio::test]
async fn a_null_in_a_non_null_target_column_is_a_data_error() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    assert!(ws.run_cli(&["--date", "2024-01-03"]).status.success());
    edit_config(
        &ws,
        "count(*) AS devices",
        "CAST(NULLIF(count(*), count(*)) AS BIGINT) AS devices",
    );
    assert_rejected(&ws, &["--date", "2024-01-03"], 3, &["devices"]).await;
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-03").await,
        expected_counts("2024-01-03", &[(100, 1)])
    );
}

/// A target with a CHECK constraint (a table feature latefill does not write itself)
/// is written through delta-rs, which enforces the constraint.
#[tokio::test]
async fn a_target_check_constraint_is_enforced() {
    let ws = Workspace::new();
    ws.generate("2024-01-03", 100, 1).await;
    ws.generate("2024-01-04", 100, 2).await;
    assert!(ws.run_cli(&["--date", "2024-01-03"]).status.success());
    open(&ws.target_path())
        .await
        .add_constraint()
        .with_constraint("few_devices", "devices < 1000")
        .await
        .unwrap();
    // Within the constraint: written.
    assert!(ws.run_cli(&["--date", "2024-01-04"]).status.success());
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-04").await,
        expected_counts("2024-01-04", &[(100, 2)])
    );
    // Against it: refused.
    edit_config(&ws, "count(*) AS devices", "count(*) + 1000 AS devices");
    assert_rejected(
        &ws,
        &["--date", "2024-01-04"],
        3,
        &["failed validation", "devices"],
    )
    .await;
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-04").await,
        expected_counts("2024-01-04", &[(100, 2)])
    );
}
