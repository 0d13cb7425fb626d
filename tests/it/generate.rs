//! The data generator, through `latefill generate` and the library.

use crate::common::*;
use latefill::datagen::GenerateOptions;

#[tokio::test]
async fn same_seed_writes_the_same_rows_and_another_seed_does_not() {
    let ws = Workspace::new();
    let write = |table: &str, seed: &str| {
        let out = ws.latefill(&[
            "generate",
            "--table",
            table,
            "--date",
            "2024-01-02",
            "--rows",
            "3000",
            "--seed",
            seed,
            "--duplicates-pct",
            "5",
            "--missing-fields-pct",
            "5",
            "--unprocessable-pct",
            "5",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    write("a", "42");
    write("b", "42");
    write("c", "43");
    let sorted = "ORDER BY type, full_name, version";
    let text = |batches: Vec<deltalake::arrow::array::RecordBatch>| {
        deltalake::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    };
    let a = text(query(&ws.dir.path().join("a"), sorted).await);
    let b = text(query(&ws.dir.path().join("b"), sorted).await);
    let c = text(query(&ws.dir.path().join("c"), sorted).await);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test]
async fn each_call_is_one_append_commit_into_its_partition() {
    let ws = Workspace::new();
    assert_eq!(ws.generate("2024-01-01", 100, 1).await, 0);
    assert_eq!(ws.generate("2024-01-02", 200, 1).await, 1);
    // Late data: another append to a past date.
    assert_eq!(ws.generate("2024-01-01", 50, 2).await, 2);

    let table = open(&ws.source_path()).await;
    let snapshot = table.snapshot().unwrap();
    assert_eq!(
        snapshot.metadata().partition_columns(),
        &vec!["event_time".to_owned()]
    );
    let counts = query(
        &ws.source_path(),
        "", // all rows
    )
    .await
    .iter()
    .map(|b| b.num_rows())
    .sum::<usize>();
    assert_eq!(counts, 350);
    let files = files_by_partition(&ws.source_path()).await;
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["2024-01-01", "2024-01-02"]
    );
}

#[tokio::test]
async fn bad_arguments_fail_with_usage_code_and_write_nothing() {
    let ws = Workspace::new();
    for (args, needle) in [
        (vec!["--date", "2024-13-01"], "invalid date \"2024-13-01\""),
        (
            vec!["--date", "2024-01-01", "--duplicates-pct", "101"],
            "--duplicates-pct 101",
        ),
    ] {
        let mut full = vec!["generate", "--table", "t"];
        full.extend(args);
        let out = ws.latefill(&full);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
    assert!(!ws.dir.path().join("t").exists());
}

#[tokio::test]
async fn periods_write_consecutive_days_in_one_commit_with_each_days_rows() {
    let ws = Workspace::new();
    let out = ws.latefill(&[
        "generate",
        "--table",
        "devices",
        "--date",
        "2024-02-28",
        "--periods",
        "3",
        "--rows",
        "50",
        "--seed",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("event_time=2024-02-28..2024-03-01 (3 partitions)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        table_version(&ws.source_path()).await,
        Some(0),
        "one commit"
    );
    let files = files_by_partition(&ws.source_path()).await;
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["2024-02-28", "2024-02-29", "2024-03-01"]
    );
    for day in ["2024-02-28", "2024-02-29", "2024-03-01"] {
        assert_eq!(
            recomputed_counts(&ws.source_path(), day).await,
            expected_counts(day, &[(50, 4)]),
            "{day} holds what a single call for it writes"
        );
    }
}

/// The commit file of `version` in the table at `table`, as JSON actions.
fn commit_actions(table: &std::path::Path, version: u64) -> Vec<serde_json::Value> {
    let path = table.join(format!("_delta_log/{version:020}.json"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A table that exists takes generated rows as one append commit of its own (not
/// delta-rs's write), which Delta readers read as delta-rs's: its files, partition
/// values and row counts in the stats.
#[tokio::test]
async fn an_append_to_an_existing_table_is_one_commit_of_its_files_with_their_stats() {
    let ws = Workspace::new();
    assert_eq!(ws.generate("2024-01-01", 300, 1).await, 0);
    assert_eq!(ws.generate("2024-01-02", 2_000, 2).await, 1);

    let actions = commit_actions(&ws.source_path(), 1);
    let info = &actions[0]["commitInfo"];
    assert_eq!(info["operation"], "WRITE", "{info}");
    assert!(
        info["clientVersion"]
            .as_str()
            .unwrap()
            .starts_with("latefill."),
        "{info}"
    );
    let adds: Vec<_> = actions.iter().filter_map(|a| a.get("add")).collect();
    assert!(
        !adds.is_empty() && adds.len() + 1 == actions.len(),
        "{actions:?}"
    );
    let mut rows = 0;
    for add in &adds {
        assert_eq!(add["dataChange"], true, "{add}");
        assert_eq!(add["partitionValues"]["event_time"], "2024-01-02", "{add}");
        let path = add["path"].as_str().unwrap();
        assert!(path.starts_with("event_time=2024-01-02/"), "{path}");
        let size = std::fs::metadata(ws.source_path().join(path))
            .unwrap()
            .len();
        assert_eq!(add["size"], size, "{add}");
        let stats: serde_json::Value =
            serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
        rows += stats["numRecords"].as_u64().unwrap();
        assert!(stats["minValues"]["type"].is_string(), "{stats}");
    }
    assert_eq!(rows, 2_000);

    // delta-rs reads the rows the seed gives, partition value included.
    assert_eq!(table_version(&ws.source_path()).await, Some(1));
    for (day, rows, seed) in [("2024-01-01", 300, 1), ("2024-01-02", 2_000, 2)] {
        assert_eq!(
            recomputed_counts(&ws.source_path(), day).await,
            expected_counts(day, &[(rows, seed)]),
            "{day}"
        );
    }
}

/// Appends keep the checkpoints and the log cleanup the table asks for, as delta-rs's
/// commits do: a checkpoint at every tenth commit, the commits before it removed.
#[tokio::test]
async fn appends_write_checkpoints_and_clean_up_the_log_as_the_table_asks() {
    let ws = Workspace::new();
    for (i, day) in (1..=25).map(|d| format!("2024-01-{d:02}")).enumerate() {
        let version = GenerateOptions::new(ws.source_path().to_str().unwrap(), &day)
            .unwrap()
            .with_rows(20)
            .with_seed(i as u64)
            .with_table_property("delta.checkpointInterval", "10")
            .with_table_property("delta.logRetentionDuration", "interval 0 seconds")
            .write()
            .await
            .unwrap()
            .table_version;
        assert_eq!(version, i as u64);
        let checkpoint = ws
            .source_path()
            .join(format!("_delta_log/{version:020}.checkpoint.parquet"));
        assert_eq!(checkpoint.exists(), version % 10 == 9, "version {version}");
    }
    let log = ws.source_path().join("_delta_log");
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(log.join("_last_checkpoint")).unwrap()).unwrap();
    assert_eq!(last["version"], 19);
    let commits = commit_versions(&ws.source_path());
    assert_eq!(
        commits.first(),
        Some(&19),
        "cleaned up to the checkpoint: {commits:?}"
    );
    assert_eq!(commits.last(), Some(&24));

    // Read from the checkpoint, the table holds every day's rows.
    let total: usize = query(&ws.source_path(), "")
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(total, 25 * 20);
}

/// Generators started at once on one table each commit once: a version taken by
/// another is found by the put-if-absent, and the append commits at the next.
#[tokio::test]
async fn generators_started_at_once_on_one_table_each_commit_once() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 10, 0).await;
    let days = [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-06",
    ];
    let children: Vec<_> = days
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let seed = i.to_string();
            spawn_latefill(
                ws.dir.path(),
                &[
                    "generate", "--table", "devices", "--date", day, "--rows", "500", "--seed",
                    &seed,
                ],
            )
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        table_version(&ws.source_path()).await,
        Some(days.len() as u64)
    );
    let mut committed: Vec<String> = (1..=days.len() as u64)
        .map(|v| {
            let actions = commit_actions(&ws.source_path(), v);
            let add = actions.iter().find_map(|a| a.get("add")).unwrap();
            add["partitionValues"]["event_time"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    committed.sort();
    assert_eq!(committed, days, "each day's rows in one commit");
    for (i, day) in days.iter().enumerate() {
        assert_eq!(
            recomputed_counts(&ws.source_path(), day).await,
            expected_counts(day, &[(500, i as u64)]),
            "{day}"
        );
    }
}

/// A table whose protocol asks more of a writer than a plain append does (here change
/// data feed, writer version 4) is written by delta-rs's write, which honours it.
#[tokio::test]
async fn a_table_whose_protocol_asks_more_is_written_by_delta_rs() {
    let ws = Workspace::new();
    let write = |day: &str, seed: u64| {
        GenerateOptions::new(ws.source_path().to_str().unwrap(), day)
            .unwrap()
            .with_rows(100)
            .with_seed(seed)
            .with_table_property("delta.enableChangeDataFeed", "true")
            .write()
    };
    write("2024-01-01", 1).await.unwrap();
    assert_eq!(write("2024-01-02", 2).await.unwrap().table_version, 1);
    let actions = commit_actions(&ws.source_path(), 1);
    let info = &actions[0]["commitInfo"];
    assert!(
        info["clientVersion"]
            .as_str()
            .unwrap()
            .starts_with("delta-rs"),
        "{info}"
    );
    assert_eq!(
        recomputed_counts(&ws.source_path(), "2024-01-02").await,
        expected_counts("2024-01-02", &[(100, 2)])
    );
}

/// A table of another schema is refused as before, and nothing is written to it.
#[tokio::test]
async fn a_table_of_another_schema_is_refused_and_left_as_it_was() {
    let ws = Workspace::new();
    append_batch(
        &ws.source_path(),
        target_row("iphone", "17.0", "2024-01-01"),
        &["event_time"],
    )
    .await;
    let before = table_version(&ws.source_path()).await;
    let out = ws.latefill(&["generate", "--table", "devices", "--date", "2024-01-02"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("writing device data to"),
        "{}",
        stderr(&out)
    );
    assert_eq!(table_version(&ws.source_path()).await, before);
}
