//! The data generator, through `latefill generate` and the library.

use crate::common::*;

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
