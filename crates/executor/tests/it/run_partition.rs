//! `run_partition`: one partition, pinned version, partition overwrite, txn.

use latefill_core::{PartitionDate, TableVersion};
use latefill_executor::{Error, Session, run_partition};
use latefill_testkit::*;

fn date(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

#[tokio::test]
async fn processes_exactly_one_partition_and_leaves_the_others_untouched() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    for (i, d) in ["2024-01-01", "2024-01-02", "2024-01-03"]
        .iter()
        .enumerate()
    {
        ws.generate(d, 2_000, i as u64).await;
    }
    for d in ["2024-01-01", "2024-01-03"] {
        run_partition(&pipeline, date(d))
            .with_session(session.clone())
            .await
            .unwrap();
    }
    let before = files_by_partition(&ws.target_path()).await;

    let report = run_partition(&pipeline, date("2024-01-02"))
        .with_session(session.clone())
        .await
        .unwrap();
    assert_eq!(report.partition, "event_time=2024-01-02");
    assert_eq!(report.rows_read, 2_000);

    let after = files_by_partition(&ws.target_path()).await;
    assert_eq!(after["2024-01-01"], before["2024-01-01"]);
    assert_eq!(after["2024-01-03"], before["2024-01-03"]);
    assert!(after.contains_key("2024-01-02"));
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-02").await,
        expected_counts("2024-01-02", &[(2_000, 1)])
    );
    assert_eq!(
        report.rows_written as usize,
        expected_counts("2024-01-02", &[(2_000, 1)]).len()
    );
}

#[tokio::test]
async fn running_a_date_twice_leaves_the_same_rows() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 3_000, 7).await;
    let first = run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .await
        .unwrap();
    let rows_first = target_partition_text(&ws.target_path(), "2024-01-01").await;
    let second = run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .await
        .unwrap();
    let rows_second = target_partition_text(&ws.target_path(), "2024-01-01").await;

    assert_eq!(rows_first, rows_second);
    assert_eq!(first.rows_written, second.rows_written);
    assert_eq!(second.target_version, first.target_version.get() + 1);
    // One file set replaced the other: the partition holds only the second run's rows.
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        expected_counts("2024-01-01", &[(3_000, 7)])
    );
}

#[tokio::test]
async fn a_rerun_after_a_late_append_reflects_the_new_rows() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 1_000, 1).await;
    ws.generate("2024-01-02", 1_000, 2).await;
    run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .await
        .unwrap();
    let other_before = target_partition_text(&ws.target_path(), "2024-01-02").await;

    let late_version = ws.generate("2024-01-01", 500, 3).await;
    let report = run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .await
        .unwrap();

    assert_eq!(report.source_version, late_version);
    assert_eq!(report.rows_read, 1_500);
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        expected_counts("2024-01-01", &[(1_000, 1), (500, 3)])
    );
    assert_eq!(
        target_partition_text(&ws.target_path(), "2024-01-02").await,
        other_before
    );
}

/// Runs in one process read the target as this process last knew it when only its
/// own commits of other partitions came since; a rerun of a partition it wrote since
/// reads the commit of that partition, and replaces its files.
#[tokio::test]
async fn reruns_in_one_process_replace_exactly_their_partition() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    let days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"];
    let mut batches: Vec<Vec<(usize, u64)>> = Vec::new();
    for (i, d) in days.iter().enumerate() {
        ws.generate(d, 500, i as u64).await;
        batches.push(vec![(500, i as u64)]);
    }
    for d in days {
        run_partition(&pipeline, date(d))
            .with_session(session.clone())
            .await
            .unwrap();
    }
    // Late rows in every day; reruns in an order where each day's last commit is a few
    // of this process's own commits behind, or the one just made.
    for (i, d) in days.iter().enumerate() {
        ws.generate(d, 100, 10 + i as u64).await;
        batches[i].push((100, 10 + i as u64));
    }
    for i in [3, 3, 1, 0, 2, 1, 3, 0] {
        run_partition(&pipeline, date(days[i]))
            .with_session(session.clone())
            .await
            .unwrap();
    }
    for (d, batches) in days.iter().zip(&batches) {
        assert_eq!(
            target_counts(&ws.target_path(), d).await,
            expected_counts(d, batches),
            "{d}"
        );
    }
}

/// The source version the target's `txn` records for `app_id`.
async fn txn_version(target: &std::path::Path, app_id: &str) -> Option<i64> {
    let target = open(target).await;
    target
        .snapshot()
        .unwrap()
        .transaction_version(target.log_store().as_ref(), app_id)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_commit_records_the_pinned_source_version_as_a_txn() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    let v0 = ws.generate("2024-01-01", 1_000, 1).await;
    let v1 = ws.generate("2024-01-01", 400, 2).await;
    ws.generate("2024-01-02", 100, 3).await;
    let app_id = pipeline.app_id(&pipeline.partitioning.key(date("2024-01-01")));

    // Latest: the version when the run starts.
    let latest = run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .await
        .unwrap();
    assert_eq!(latest.source_version, v1 + 1);
    assert_eq!(
        txn_version(&ws.target_path(), &app_id).await,
        Some(latest.source_version.get() as i64)
    );

    // Pinned: the rows and the txn are those of version v0.
    let pinned = run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .with_source_version(TableVersion::new(v0))
        .await
        .unwrap();
    assert_eq!(pinned.source_version, v0);
    assert_eq!(pinned.rows_read, 1_000);
    assert_eq!(
        txn_version(&ws.target_path(), &app_id).await,
        Some(v0 as i64)
    );
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        expected_counts("2024-01-01", &[(1_000, 1)])
    );
}

#[tokio::test]
async fn files_of_other_partitions_are_never_opened() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 1_000, 1).await;
    ws.generate("2024-01-02", 1_000, 2).await;
    // Corrupt every data file of 2024-01-01: reading one would fail the run.
    let day1 = ws.source_path().join("event_time=2024-01-01");
    let mut corrupted = 0;
    for entry in std::fs::read_dir(&day1).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            std::fs::write(&path, b"not parquet").unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);

    let report = run_partition(&pipeline, date("2024-01-02"))
        .with_session(session.clone())
        .await
        .unwrap();
    assert_eq!(report.rows_read, 1_000);
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-02").await,
        expected_counts("2024-01-02", &[(1_000, 2)])
    );
    // The corruption is real: the corrupted day does fail.
    let err = run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Execution { .. }), "{err}");
}

#[tokio::test]
async fn allow_empty_writes_an_empty_partition() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 1_000, 1).await;
    run_partition(&pipeline, date("2024-01-01"))
        .with_session(session.clone())
        .await
        .unwrap();
    // A date with no source data replaces its target partition with nothing.
    let report = run_partition(&pipeline, date("2024-01-05"))
        .with_session(session.clone())
        .with_allow_empty(true)
        .await
        .unwrap();
    assert_eq!(
        (report.rows_read, report.rows_written, report.files_read),
        (0, 0, 0)
    );
    assert!(
        target_counts(&ws.target_path(), "2024-01-05")
            .await
            .is_empty()
    );
    assert!(
        !target_counts(&ws.target_path(), "2024-01-01")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_racing_a_compaction_of_its_partition_duplicates_nothing() {
    use deltalake::{FilterOp, FilterValue};

    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 2_000, 1).await;
    let expected = expected_counts("2024-01-01", &[(2_000, 1)]);
    let stray = target_row("stray", "0", "2024-01-01");
    for round in 0..6 {
        run_partition(&pipeline, date("2024-01-01"))
            .with_session(session.clone())
            .await
            .unwrap();
        // A second file in the partition, so that the compaction has work to do.
        append_batch(&ws.target_path(), stray.clone(), &["event_time"]).await;
        let filter = [(
            "event_time",
            FilterOp::Eq,
            FilterValue::Scalar("2024-01-01"),
        )];
        let target = open(&ws.target_path()).await;
        let (run, _compaction) = tokio::join!(
            async {
                run_partition(&pipeline, date("2024-01-01"))
                    .with_session(session.clone())
                    .await
            },
            async { target.optimize().with_filters(&filter).await },
        );
        // The rewrite wins or is redone; the compaction may lose its conflict.
        run.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            target_counts(&ws.target_path(), "2024-01-01").await,
            expected,
            "round {round}"
        );
    }
}

/// Another writer's commit landing while a run writes is kept, and so is the run's:
/// the run commits after it, once delta-rs has checked that the two do not conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_of_another_writer_during_a_run_is_kept() {
    use deltalake::protocol::SaveMode;

    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 2_000, 1).await;
    ws.generate("2024-01-02", 2_000, 2).await;
    let expected = expected_counts("2024-01-01", &[(2_000, 1)]);
    // This process's first commit; the runs below follow it.
    run_partition(&pipeline, date("2024-01-02"))
        .with_session(session.clone())
        .await
        .unwrap();
    // One row of the other writer's partition a round, each of its own version.
    let other_writers_row = |round: usize| target_row("other", &round.to_string(), "2024-01-09");
    for round in 0..8 {
        // Its own handle on the target: a writer that is not this process's runs. It
        // writes again when delta-rs's append finds the run's removes in its way.
        let other = open(&ws.target_path()).await;
        let (run, append) = tokio::join!(
            async {
                run_partition(&pipeline, date("2024-01-01"))
                    .with_session(session.clone())
                    .await
            },
            async {
                let mut other = other;
                loop {
                    match other
                        .clone()
                        .write(vec![other_writers_row(round)])
                        .with_save_mode(SaveMode::Append)
                        .await
                    {
                        Err(deltalake::DeltaTableError::Transaction { .. }) => {
                            other = open(&ws.target_path()).await;
                        }
                        written => break written,
                    }
                }
            },
        );
        let run = run.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let append = append.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_ne!(
            Some(run.target_version.get()),
            append.version(),
            "round {round}"
        );
        assert_eq!(
            target_counts(&ws.target_path(), "2024-01-01").await,
            expected,
            "round {round}"
        );
        let others = target_counts(&ws.target_path(), "2024-01-09").await;
        assert_eq!(others.len(), round + 1, "round {round}");
    }
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-02").await,
        expected_counts("2024-01-02", &[(2_000, 2)])
    );
}

/// A run after another writer's commit to its partition, made since this process's
/// last commit, reads that commit and replaces its rows: the version it found taken
/// tells the process that its own view of the target is behind.
#[tokio::test]
async fn a_run_after_another_writers_commit_to_its_partition_replaces_its_rows() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 2_000, 1).await;
    ws.generate("2024-01-02", 2_000, 2).await;
    let expected = expected_counts("2024-01-01", &[(2_000, 1)]);
    let stray = target_row("stray", "0", "2024-01-01");
    // The target's creation, then this process's first commit.
    for _ in 0..2 {
        run_partition(&pipeline, date("2024-01-01"))
            .with_session(session.clone())
            .await
            .unwrap();
    }
    // Another writer's row in the partition after this process's last commit, then
    // after one of its commits of another partition.
    for (round, other_partition) in [None, Some("2024-01-02")].into_iter().enumerate() {
        if let Some(other) = other_partition {
            run_partition(&pipeline, date(other))
                .with_session(session.clone())
                .await
                .unwrap();
        }
        append_batch(&ws.target_path(), stray.clone(), &["event_time"]).await;
        run_partition(&pipeline, date("2024-01-01"))
            .with_session(session.clone())
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            target_counts(&ws.target_path(), "2024-01-01").await,
            expected,
            "round {round}"
        );
    }
}

/// Three days of 500 rows run in this process (target versions 0 to 2: the creation,
/// then commits made straight after the process's own), then the target deleted.
async fn three_days_written_then_target_deleted()
-> (Workspace, latefill_executor::Pipeline, Session, Vec<String>) {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    let session = Session::new();
    let days = ws.generate_days("2024-01", 3, 500).await;
    for d in &days {
        run_partition(&pipeline, date(d))
            .with_session(session.clone())
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(ws.target_path()).unwrap();
    (ws, pipeline, session, days)
}

/// A target deleted while the process that wrote it runs on is created afresh by the
/// process's next run, not continued from what the process remembers of it.
#[tokio::test]
async fn a_target_deleted_under_a_running_process_is_created_again() {
    let (ws, pipeline, session, days) = three_days_written_then_target_deleted().await;

    // A day whose last commit is older than the process's last.
    let report = run_partition(&pipeline, date(&days[0]))
        .with_session(session.clone())
        .await
        .unwrap();
    assert_eq!(report.target_version, 0);
    assert_eq!(table_version(&ws.target_path()).await, Some(0));
    assert_eq!(
        target_counts(&ws.target_path(), &days[0]).await,
        expected_counts(&days[0], &[(500, 0)])
    );
    assert!(target_counts(&ws.target_path(), &days[2]).await.is_empty());
}

/// A target deleted and created again by another writer, with as many commits as the
/// process had made, is read afresh by the process's next run: its own last commit is
/// not the one there. Read as the process last knew it, the run would miss the other
/// writer's row in its partition, and commit after it unchecked.
#[tokio::test]
async fn a_target_created_again_by_another_writer_under_a_running_process_is_read_afresh() {
    let (ws, pipeline, session, days) = three_days_written_then_target_deleted().await;
    // Another writer's table there, versions 0 to 2, one row in the first day.
    for (round, day) in ["2024-01-04", &days[0], "2024-01-04"]
        .into_iter()
        .enumerate()
    {
        let row = target_row("other", &round.to_string(), day);
        append_batch(&ws.target_path(), row, &["event_time"]).await;
    }

    let report = run_partition(&pipeline, date(&days[0]))
        .with_session(session.clone())
        .await
        .unwrap();
    assert_eq!(report.target_version, 3);
    assert_eq!(
        target_counts(&ws.target_path(), &days[0]).await,
        expected_counts(&days[0], &[(500, 0)]),
        "the other writer's row in the partition is replaced"
    );
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-04").await.len(),
        2
    );
}

/// A target latefill creates is checkpointed every 10 commits, as Spark does: opening
/// it then replays at most 10 commits, on every store.
#[tokio::test]
async fn a_new_target_is_checkpointed_every_ten_commits() {
    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    ws.generate("2024-01-01", 100, 1).await;
    for _ in 0..10 {
        run_partition(&pipeline, date("2024-01-01"))
            .with_session(session.clone())
            .await
            .unwrap();
    }
    let log = ws.target_path().join("_delta_log");
    assert!(
        log.join("00000000000000000009.checkpoint.parquet").exists(),
        "no checkpoint at version 9"
    );
    let properties = open(&ws.target_path()).await;
    let configuration = properties
        .snapshot()
        .unwrap()
        .metadata()
        .configuration()
        .clone();
    assert_eq!(
        configuration
            .get("delta.checkpointInterval")
            .map(String::as_str),
        Some("10")
    );
}

/// A table read again through one `Tables` is brought up to date from the commits after
/// the version read first; an older version asked for is that version.
#[tokio::test]
async fn a_table_read_again_in_one_process_is_its_latest_version() {
    use latefill_core::storage::{StorageOptions, Tables, active_files};
    let files = |table: &deltalake::DeltaTable| {
        let table = table.clone();
        async move { active_files(&table).await.unwrap().len() }
    };
    let ws = Workspace::new();
    let (url, options) = (url_of(&ws.source_path()), StorageOptions::new());
    let tables = Tables::new();
    let load = |version| tables.load(&url, &options, version);
    ws.generate("2024-01-01", 100, 1).await;
    let first = load(None).await.unwrap();
    assert_eq!((first.version(), files(&first).await), (Some(0), 1));
    ws.generate("2024-01-02", 100, 2).await;
    let second = load(None).await.unwrap();
    assert_eq!((second.version(), files(&second).await), (Some(1), 2));
    let pinned = load(Some(0)).await.unwrap();
    assert_eq!((pinned.version(), files(&pinned).await), (Some(0), 1));
    let latest = load(None).await.unwrap();
    assert_eq!(latest.version(), Some(1));
}
