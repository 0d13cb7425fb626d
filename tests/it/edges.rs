//! The edges where a user's first mistake meets the program: refused before anything
//! is written, with the bad value, why, and what to do; never a folder adopted that
//! is not latefill's; the scheduler hand-off as documented; repair by hand.
//!
//! Each case runs the real binary and lists every table's `_delta_log` before and
//! after: a refused run leaves them as they were.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use crate::common::*;

/// Every file under `dir`, relative and sorted (nothing when `dir` does not exist).
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(at) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `_delta_log` of each of the workspace's three tables.
fn logs(ws: &Workspace) -> BTreeMap<&'static str, Vec<String>> {
    [
        ("source", ws.source_path()),
        ("target", ws.target_path()),
        ("state", ws.dir.path().join("state")),
    ]
    .into_iter()
    .map(|(role, path)| (role, files_under(&path.join("_delta_log"))))
    .collect()
}

/// Asserts that `out` exited with `code`, and that its stderr is one error message
/// holding each of `words`; returns that message.
fn refused(out: &Output, code: i32, words: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstderr: {err}\nstdout: {}",
        stdout(out)
    );
    let message = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    for word in words {
        assert!(err.contains(word), "{word:?} not in: {err}");
    }
    message.to_owned()
}

/// A workspace whose 2024-01-01 was processed with the default SQL, and which has
/// source data for 2024-01-02.
async fn processed_day_one() -> Workspace {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 500, 1).await;
    ws.generate("2024-01-02", 500, 2).await;
    let out = ws.run_cli(&["--date", "2024-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    ws
}

/// Rewrites the workspace's pipeline file with another SQL.
fn set_sql(ws: &Workspace, sql: &str) {
    let text = std::fs::read_to_string(&ws.config).unwrap();
    let start = text.find("sql = '''").unwrap();
    std::fs::write(&ws.config, format!("{}sql = '''{sql}'''\n", &text[..start])).unwrap();
}

/// Rewrites one table location of the workspace's pipeline file.
fn set_table(ws: &Workspace, section: &str, location: &str) {
    let text = std::fs::read_to_string(&ws.config).unwrap();
    let from = text.find(&format!("[{section}]\ntable = ")).unwrap();
    let line_end = from + text[from..].find("\"\n").unwrap() + 2;
    let replaced = format!(
        "{}[{section}]\ntable = \"{location}\"\n{}",
        &text[..from],
        &text[line_end..]
    );
    std::fs::write(&ws.config, replaced).unwrap();
}

#[tokio::test]
async fn a_folder_of_plain_parquet_files_is_not_adopted_as_the_target() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 300, 1).await;
    // A Hive-style table someone else wrote: Parquet files, no _delta_log.
    let legacy = ws.target_path();
    let source_file = files_under(&ws.source_path())
        .into_iter()
        .find(|f| f.ends_with(".parquet"))
        .unwrap();
    for (i, dir) in ["event_time=2023-12-30", "event_time=2023-12-31"]
        .iter()
        .enumerate()
    {
        std::fs::create_dir_all(legacy.join(dir)).unwrap();
        std::fs::copy(
            ws.source_path().join(&source_file),
            legacy.join(dir).join(format!("part-{i}.parquet")),
        )
        .unwrap();
    }
    let before = files_under(&legacy);

    for args in [
        vec!["--date", "2024-01-01"],
        vec!["--date", "2024-01-01", "--allow-empty"],
    ] {
        let out = ws.run_cli(&args);
        let message = refused(
            &out,
            2,
            &[
                "is not a Delta table",
                "event_time=2023-12-30/",
                "new location",
            ],
        );
        assert!(message.contains(legacy.to_str().unwrap()), "{message}");
    }
    let out = ws.latefill(&[
        "backfill",
        "--config",
        ws.config.to_str().unwrap(),
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
    ]);
    refused(&out, 2, &["is not a Delta table"]);

    // Nothing written anywhere: the folder as it was, no state table.
    assert_eq!(files_under(&legacy), before);
    assert_eq!(
        files_under(&ws.dir.path().join("state")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_folder_of_other_files_is_not_adopted_as_the_state_table() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 300, 1).await;
    let state = ws.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("notes.txt"), "mine").unwrap();

    let out = ws.run_cli(&["--date", "2024-01-01"]);
    refused(&out, 2, &["state", "is not a Delta table", "notes.txt"]);
    assert_eq!(files_under(&state), vec!["notes.txt".to_owned()]);
    assert_eq!(table_version(&ws.target_path()).await, None);
}

#[tokio::test]
async fn a_creation_cut_short_is_finished_not_refused() {
    // A first run killed after its data files and before its commit leaves files and
    // no log; they are latefill's own (the marker says so), so the next run goes on.
    let ws = Workspace::new();
    ws.generate("2024-01-01", 300, 1).await;
    let target = ws.target_path();
    std::fs::create_dir_all(target.join("event_time=2024-01-01")).unwrap();
    std::fs::write(target.join("_latefill_new_table"), "").unwrap();
    std::fs::write(
        target.join("event_time=2024-01-01/part-x.parquet"),
        "orphan",
    )
    .unwrap();
    let out = ws.run_cli(&["--date", "2024-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        target_counts(&target, "2024-01-01").await,
        expected_counts("2024-01-01", &[(300, 1)])
    );
    // The marker is removed once the table exists.
    assert!(!target.join("_latefill_new_table").exists());
}

#[tokio::test]
async fn errors_the_plan_shows_are_refused_before_the_claim() {
    let ws = processed_day_one().await;
    let cases: &[(&str, &[&str])] = &[
        ("DROP TABLE source", &["not supported"]),
        (
            "INSERT INTO source SELECT * FROM source",
            &["not supported"],
        ),
        (
            "COPY source TO '/tmp/latefill-copy.csv'",
            &["not supported"],
        ),
        ("CREATE TABLE t AS SELECT * FROM source", &["not supported"]),
        (
            "SELECT * FROM source; SELECT * FROM source",
            &["transform SQL is invalid"],
        ),
        (
            "SET datafusion.execution.batch_size = 1",
            &["not supported"],
        ),
        ("EXPLAIN SELECT * FROM source", &["event_time"]),
        ("SELECT * FROM '/etc/passwd'", &["transform SQL is invalid"]),
        (
            "SELECT type, type, event_time FROM source",
            &["transform SQL is invalid"],
        ),
        (
            "SELECT type, count(*) AS devices FROM source GROUP BY type",
            &["event_time"],
        ),
        ("SELECT nope, event_time FROM source", &["nope"]),
        // Plans, but not against the target's columns.
        (
            "SELECT type, count(*) AS n, event_time FROM source GROUP BY type, event_time",
            &["target has columns"],
        ),
    ];
    let before = logs(&ws);
    for (sql, words) in cases {
        set_sql(&ws, sql);
        for extra in [&[][..], &["--no-backfill"], &["--allow-empty"]] {
            let mut args = vec!["--date", "2024-01-02"];
            args.extend_from_slice(extra);
            let out = ws.run_cli(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(3), "{sql}: {err}");
            for word in *words {
                assert!(err.contains(word), "{sql}: {word:?} not in {err}");
            }
            assert_eq!(logs(&ws), before, "{sql}: a table's log changed");
        }
        let out = ws.latefill(&[
            "backfill",
            "--config",
            ws.config.to_str().unwrap(),
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
        ]);
        assert_eq!(out.status.code(), Some(3), "{sql}: {}", stderr(&out));
        assert_eq!(logs(&ws), before, "{sql}: backfill changed a table's log");
    }
    // Status still shows the processed day as processed, nothing failed.
    set_sql(&ws, DEFAULT_SQL);
    let status = ws.status_json(&ws.config);
    let rows = status.as_array().unwrap();
    assert_eq!(rows[0]["partition"], "event_time=2024-01-01");
    assert_eq!(rows[0]["status"], "processed");
    assert!(rows.iter().all(|r| r["status"] != "failed"), "{status}");
}

#[tokio::test]
async fn a_regular_file_where_a_table_should_be_is_a_usage_error() {
    for role in ["source", "target", "state"] {
        let ws = Workspace::new();
        ws.generate("2024-01-01", 100, 1).await;
        let file = ws.dir.path().join("a-file");
        std::fs::write(&file, "not a table").unwrap();
        set_table(&ws, role, "a-file");
        let before = logs(&ws);
        let out = ws.run_cli(&["--date", "2024-01-01"]);
        let message = refused(&out, 2, &["is a regular file", &format!("{role}.table")]);
        assert!(
            message.contains(&format!("invalid {role} table location")),
            "{message}"
        );
        assert_eq!(logs(&ws), before, "{role}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a table");

        // Under a file: no table can be there either.
        set_table(&ws, role, "a-file/table");
        let out = ws.run_cli(&["--date", "2024-01-01"]);
        refused(&out, 2, &["is a regular file"]);
        let out = ws.latefill(&["status", "--config", ws.config.to_str().unwrap()]);
        refused(&out, 2, &["is a regular file"]);
    }
    let ws = Workspace::new();
    let file = ws.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = ws.latefill(&["changes", "--table", file.to_str().unwrap()]);
    refused(&out, 2, &["is a regular file"]);
}

#[tokio::test]
async fn the_state_table_may_not_be_the_source_or_the_target() {
    for (role, location) in [("source", "devices"), ("target", "devices_daily")] {
        let ws = processed_day_one().await;
        set_table(&ws, "state", location);
        let before = logs(&ws);
        let out = ws.run_cli(&["--date", "2024-01-02"]);
        refused(
            &out,
            2,
            &[&format!("is the {role} table"), "a table of its own"],
        );
        assert_eq!(logs(&ws), before);
    }
    // Across the pipelines of a project too.
    let ws = Workspace::new();
    let project = ws.dir.path().join("project.toml");
    std::fs::write(
        &project,
        format!(
            "[[pipeline]]\nname = \"a\"\nsource = {{ table = \"devices\", partition_column = \"event_time\" }}\n\
             target = {{ table = \"a_out\" }}\nstate = {{ table = \"b_out\" }}\ntransform = {{ sql = '''{DEFAULT_SQL}''' }}\n\
             [[pipeline]]\nname = \"b\"\nsource = {{ table = \"devices\", partition_column = \"event_time\" }}\n\
             target = {{ table = \"b_out\" }}\nstate = {{ table = \"state\" }}\ntransform = {{ sql = '''{DEFAULT_SQL}''' }}\n"
        ),
    )
    .unwrap();
    let out = ws.latefill(&[
        "run",
        "--config",
        project.to_str().unwrap(),
        "--date",
        "2024-01-01",
    ]);
    refused(
        &out,
        2,
        &["pipeline \"a\"", "target table of pipeline \"b\""],
    );
}

#[tokio::test]
async fn the_scheduler_hand_off_works_as_documented() {
    let ws = Workspace::new();
    let days = ws.generate_days("2024-01", 3, 400).await;
    for day in &days {
        let out = ws.run_cli(&["--date", day]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    ws.generate("2024-01-01", 50, 11).await;
    ws.generate("2024-01-02", 60, 12).await;
    ws.generate("2024-01-04", 400, 4).await;

    // The day's run claims the late partitions and writes the plan.
    let plan_path = ws.dir.path().join("plan.json");
    let out = ws.run_cli(&[
        "--date",
        "2024-01-04",
        "--backfill-config",
        plan_path.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(report["partition"], "event_time=2024-01-04");
    assert_eq!(report["period"], "2024-01-04");
    let late: Vec<(&str, &str)> = report["late"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["partition"].as_str().unwrap(),
                l["period"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        late,
        [
            ("event_time=2024-01-01", "2024-01-01"),
            ("event_time=2024-01-02", "2024-01-02")
        ]
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    assert_eq!(
        plan["partitions"],
        serde_json::json!(["event_time=2024-01-01", "event_time=2024-01-02"])
    );
    assert_eq!(
        plan["periods"],
        serde_json::json!(["2024-01-01", "2024-01-02"])
    );

    // A run without the plan's run id may not take a handed-out partition.
    let out = ws.run_cli(&["--date", "event_time=2024-01-01", "--no-backfill"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // What an Airflow DAG does: one task per partition of the plan, as it is written.
    let run_id = plan["run_id"].as_str().unwrap();
    for partition in plan["partitions"].as_array().unwrap() {
        let partition = partition.as_str().unwrap();
        let out = ws.run_cli(&[
            "--date",
            partition,
            "--run-id",
            run_id,
            "--no-backfill",
            "--output",
            "json",
        ]);
        let report = json(&out);
        assert_eq!(report["partition"], partition);
    }
    let status = ws.status_json(&ws.config);
    assert_eq!(late_partitions(&status), Vec::<String>::new());
    for row in status.as_array().unwrap() {
        assert_eq!(row["status"], "processed", "{row}");
        // Both forms, for a scheduler to pass on either.
        let name = row["partition"].as_str().unwrap();
        assert_eq!(
            row["period"],
            name.trim_start_matches("event_time="),
            "{row}"
        );
    }
    for day in ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"] {
        assert_eq!(
            target_counts(&ws.target_path(), day).await,
            recomputed_counts(&ws.source_path(), day).await,
            "{day}"
        );
    }

    // --from and --to take names too; a name of another column is refused.
    let out = ws.latefill(&[
        "backfill",
        "--config",
        ws.config.to_str().unwrap(),
        "--from",
        "event_time=2024-01-01",
        "--to",
        "event_time=2024-01-04",
        "--all",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ws.run_cli(&["--date", "day=2024-01-01"]);
    refused(
        &out,
        2,
        &["\"day=2024-01-01\"", "\"event_time=2024-01-03\""],
    );
}

#[tokio::test]
async fn state_release_and_reset_repair_by_hand() {
    let ws = processed_day_one().await;
    let config = ws.config.to_str().unwrap();
    // A run that died holding 2024-01-02: its lease is live for ten minutes.
    let engine = latefill::Engine::new(ws.pipeline());
    let partition = engine
        .pipeline()
        .partitioning
        .key("2024-01-02".parse().unwrap());
    engine
        .state()
        .claim(&[partition], "dead-run")
        .await
        .unwrap();
    let out = ws.run_cli(&["--date", "2024-01-02"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    let state_log = || files_under(&ws.dir.path().join("state/_delta_log"));
    let before = state_log();
    let out = ws.latefill(&["state", "release", "--config", config, "2024-01-02"]);
    refused(&out, 4, &["dead-run", "--force"]);
    assert_eq!(state_log(), before);

    let out = ws.latefill(&[
        "state",
        "release",
        "--config",
        config,
        "event_time=2024-01-02",
        "--force",
        "--format",
        "json",
    ]);
    let released = json(&out);
    assert_eq!(released["released"], "event_time=2024-01-02");
    assert_eq!(released["before"]["run_id"], "dead-run");
    assert_eq!(released["before"]["status"], "processing");
    let commits = |files: Vec<String>| files.iter().filter(|f| f.ends_with(".json")).count();
    assert_eq!(
        commits(state_log()),
        commits(before.clone()) + 1,
        "one commit"
    );

    // The next run takes it at once.
    let out = ws.run_cli(&["--date", "2024-01-02"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Nothing to release now.
    let out = ws.latefill(&["state", "release", "--config", config, "2024-01-02"]);
    refused(&out, 2, &["not claimed", "processed"]);

    // Reset forgets a partition: the next backfill processes it as never run.
    let out = ws.latefill(&["state", "reset", "--config", config, "2024-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("reset event_time=2024-01-01"),
        "{}",
        stdout(&out)
    );
    let status = ws.status_json(&ws.config);
    let day_one = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == "event_time=2024-01-01")
        .unwrap();
    assert_eq!(day_one["status"], "unprocessed");
    let lines = ws.backfill_lines(&ws.config, "2024-01-01", "2024-01-02", &[]);
    let processed: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "processed")
        .map(|l| l["partition"].as_str().unwrap())
        .collect();
    assert_eq!(processed, ["event_time=2024-01-01"]);

    let out = ws.latefill(&["state", "reset", "--config", config, "2024-01-09"]);
    refused(&out, 2, &["no row for partition event_time=2024-01-09"]);
}

/// A late partition whose reprocessing fails on its data stays late: the target still
/// holds the output of the version it was processed at. Every later run retries it and
/// says so (exit 3), and once the data is fixed a run brings it up to date.
#[tokio::test]
async fn a_late_partition_that_failed_stays_late_until_a_run_succeeds() {
    // Fails on any group of more than 1,000 rows: only the late rows make one.
    let ws = Workspace::with_sql(
        "SELECT type, version, count(*) AS devices, \
         CAST(CASE WHEN count(*) > 1000 THEN 'too many' ELSE '1' END AS INT) AS ok, \
         event_time FROM source GROUP BY type, version, event_time",
    );
    for (d, day) in ["2024-01-01", "2024-01-02"].iter().enumerate() {
        ws.generate(day, 100, d as u64).await;
        assert!(ws.run_cli(&["--date", day]).status.success());
    }
    ws.generate("2024-01-01", 20_000, 11).await;
    ws.generate("2024-01-03", 100, 3).await;
    for attempt in 1..=2 {
        let out = ws.run_cli(&["--date", "2024-01-03", "--output", "json"]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "attempt {attempt}: {}",
            stderr(&out)
        );
        // The run's report, then the error that sets the exit code.
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["failed"][0]["partition"], "event_time=2024-01-01");
        assert_eq!(lines[1]["error"]["kind"], "data");
        let status = ws.status_json(&ws.config);
        assert_eq!(late_partitions(&status), ["event_time=2024-01-01"]);
    }
    // The day's rows are replaced by good ones; the next run reprocesses it and
    // nothing is late any more.
    delete_where(&ws.source_path(), "event_time = '2024-01-01'").await;
    ws.generate("2024-01-01", 100, 0).await;
    let out = ws.run_cli(&["--date", "2024-01-03"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        late_partitions(&ws.status_json(&ws.config)),
        Vec::<String>::new()
    );
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        recomputed_counts(&ws.source_path(), "2024-01-01").await
    );
}
