//! Late data through the engine and the CLI: what makes a partition late, the plan
//! handed to external schedulers, and the state rebuilt from the target.

use deltalake::{FilterOp, FilterValue};
use latefill::PartitionDate;
use latefill::engine::{Engine, LateHandling};

use crate::common::*;

fn date(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

/// A run of `date` that only reports what is late.
fn report_only(engine: &Engine, date: PartitionDate) -> latefill::engine::RunDate {
    engine.run_date(date).with_late(LateHandling::ReportOnly)
}

fn names(late: &[latefill::plan::LatePartition]) -> Vec<&str> {
    late.iter().map(|l| l.partition.as_str()).collect()
}

/// Two days, each written in three appends, both processed.
async fn two_processed_days(ws: &Workspace) -> Engine {
    for seed in 0..3 {
        ws.generate("2024-01-01", 500, seed).await;
        ws.generate("2024-01-02", 500, 10 + seed).await;
    }
    let engine = Engine::new(ws.pipeline());
    for d in ["2024-01-01", "2024-01-02"] {
        report_only(&engine, date(d)).await.unwrap();
    }
    engine
}

#[tokio::test]
async fn a_compaction_does_not_make_a_partition_late_but_a_delete_does() {
    let ws = Workspace::new();
    let engine = two_processed_days(&ws).await;

    // OPTIMIZE rewrites 2024-01-01's three files into one, with dataChange=false.
    let filter = [(
        "event_time",
        FilterOp::Eq,
        FilterValue::Scalar("2024-01-01"),
    )];
    let (_, metrics) = open(&ws.source_path())
        .await
        .optimize()
        .with_filters(&filter)
        .await
        .unwrap();
    assert!(
        metrics.num_files_removed >= 2,
        "the compaction rewrote files"
    );
    let detection = engine.detect(date("2024-01-03")).await.unwrap();
    assert!(detection.late.is_empty(), "{:?}", detection.late);

    // DELETE rows in 2024-01-01: its data changed.
    delete_where(
        &ws.source_path(),
        "event_time = '2024-01-01' AND type = 'galaxy'",
    )
    .await;
    let detection = engine.detect(date("2024-01-03")).await.unwrap();
    assert_eq!(names(&detection.late), ["event_time=2024-01-01"]);
}

/// The `(type, version)` of each row of the source's data file `file`, in the file's
/// order (the positions a deletion vector names).
fn rows_of_file(table: &std::path::Path, file: &str) -> Vec<(String, String)> {
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::DataType;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(table.join(file)).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let text = |name: &str| {
            deltalake::arrow::compute::cast(batch.column_by_name(name).unwrap(), &DataType::Utf8)
                .unwrap()
        };
        let (kinds, versions) = (text("type"), text("version"));
        let (kinds, versions) = (kinds.as_string::<i32>(), versions.as_string::<i32>());
        for i in 0..batch.num_rows() {
            rows.push((kinds.value(i).to_owned(), versions.value(i).to_owned()));
        }
    }
    rows
}

/// Deletes the rows at `positions` of the data file `file` as Spark and Databricks do
/// on a table with deletion vectors: the Delta kernel writes the vector to a file, and
/// one commit removes the data file and adds it again with the vector.
async fn delete_by_deletion_vector(table: &std::path::Path, file: &str, positions: &[u64]) {
    use delta_kernel::actions::deletion_vector_writer::{
        KernelDeletionVector, StreamingDeletionVectorWriter,
    };
    use deltalake::kernel::transaction::CommitBuilder;
    use deltalake::kernel::{Action, Add, DeletionVectorDescriptor, StorageType};
    use deltalake::protocol::DeltaOperation;

    let mut vector = KernelDeletionVector::new();
    vector.add_deleted_row_indexes(positions.iter().copied());
    let mut bytes = Vec::new();
    let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
    let written = writer.write_deletion_vector(vector).unwrap();
    writer.finalize().unwrap();
    let vector_file = table.join("deletion_vector_latefill-test.bin");
    std::fs::write(&vector_file, &bytes).unwrap();

    let delta = open(table).await;
    let files = latefill::storage::active_files(&delta).await.unwrap();
    let view = files.iter().find(|f| f.path() == file).unwrap();
    let add = Add {
        path: view.path().into_owned(),
        partition_values: view.partition_values_map(),
        size: view.size(),
        modification_time: view.modification_time(),
        data_change: true,
        stats: view.stats(),
        deletion_vector: Some(DeletionVectorDescriptor {
            storage_type: StorageType::AbsolutePath,
            path_or_inline_dv: url::Url::from_file_path(&vector_file).unwrap().to_string(),
            offset: Some(written.offset),
            size_in_bytes: written.size_in_bytes,
            cardinality: written.cardinality,
        }),
        ..Default::default()
    };
    CommitBuilder::default()
        .with_actions(vec![
            Action::Remove(view.remove_action(true)),
            Action::Add(add),
        ])
        .build(
            Some(delta.snapshot().unwrap()),
            delta.log_store(),
            DeltaOperation::Delete { predicate: None },
        )
        .await
        .unwrap();
}

/// Two days processed through the CLI from a source with deletion vectors enabled;
/// then every third row of 2024-01-01's one data file deleted by a vector, then
/// `after_delete` (on the source), a third day and its run, which must find 2024-01-01
/// late and reprocess it without the deleted rows.
async fn a_deletion_vector_delete_is_reprocessed(after_delete: impl AsyncFnOnce(&Workspace)) {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 600, 1).await;
    ws.generate("2024-01-02", 400, 2).await;
    let dvs = [("delta.enableDeletionVectors".to_owned(), "true".to_owned())];
    open(&ws.source_path())
        .await
        .set_tbl_properties()
        .with_properties(dvs.into_iter().collect())
        .await
        .unwrap();
    for d in ["2024-01-01", "2024-01-02"] {
        let out = ws.run_cli(&["--date", d]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    let files = files_by_partition(&ws.source_path()).await;
    let [file] = files["2024-01-01"].as_slice() else {
        panic!("one file expected: {files:?}");
    };
    let rows = rows_of_file(&ws.source_path(), file);
    assert_eq!(rows.len(), 600);
    let deleted: Vec<u64> = (0..600).step_by(3).collect();
    delete_by_deletion_vector(&ws.source_path(), file, &deleted).await;
    after_delete(&ws).await;

    ws.generate("2024-01-03", 100, 3).await;
    let run = json(&ws.run_cli(&["--date", "2024-01-03", "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-01-01"],
        "{run}"
    );
    assert_eq!(run["backfilled"][0]["rows_read"], 400, "{run}");
    // A deletion vector is no append, and a cleaned-up log cannot show what was
    // appended: the partition is recomputed.
    assert_eq!(run["backfilled"][0]["strategy"], "replace", "{run}");
    let reason = run["backfilled"][0]["strategy_reason"].as_str().unwrap();
    assert!(
        reason.contains("deletion vector") || reason.contains("can no longer be read"),
        "{reason}"
    );
    let mut expected = std::collections::BTreeMap::new();
    for (_, key) in rows.into_iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        *expected.entry(key).or_insert(0) += 1;
    }
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        expected
    );
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-02").await,
        expected_counts("2024-01-02", &[(400, 2)])
    );
}

/// A DELETE under deletion vectors: the partition's data file is removed and added
/// again with a vector of its deleted rows. The partition is late, and its
/// reprocessing, through the CLI, leaves out exactly those rows.
#[tokio::test]
async fn rows_deleted_by_a_deletion_vector_are_left_out_when_reprocessed() {
    a_deletion_vector_delete_is_reprocessed(async |_| {}).await;
}

/// The same, when more commits came, then a checkpoint, and log cleanup removed the
/// commits before it (as Spark does): the delete is in no commit any more, only in the
/// checkpoint's files, and the partition's files (the same path, now with a vector)
/// tell that it changed.
#[tokio::test]
async fn a_deletion_vector_delete_behind_a_cleaned_up_log_is_found_by_the_files() {
    a_deletion_vector_delete_is_reprocessed(async |ws| {
        ws.generate("2024-01-05", 50, 5).await;
        ws.generate("2024-01-05", 50, 6).await;
        checkpoint_and_clean_up_log(&ws.source_path()).await;
    })
    .await;
}

#[tokio::test]
async fn state_rebuild_restores_what_the_state_table_held() {
    let ws = Workspace::new();
    let engine = two_processed_days(&ws).await;
    ws.generate("2024-01-01", 100, 99).await;
    ws.generate("2024-01-03", 100, 98).await;
    // Processes 2024-01-03 and backfills the late 2024-01-01.
    let outcome = engine.run_date(date("2024-01-03")).await.unwrap();
    assert_eq!(outcome.backfilled.len(), 1);
    let rows = async |engine: &Engine| -> Vec<_> {
        let state = engine.state().read().await.unwrap();
        state
            .partitions
            .into_values()
            .map(|p| (p.partition, p.status, p.source_version))
            .collect()
    };
    let before = rows(&engine).await;
    assert_eq!(before.len(), 3, "{before:?}");

    std::fs::remove_dir_all(ws.dir.path().join("state")).unwrap();
    let out = ws.latefill(&["state", "rebuild", "--config", ws.config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(rows(&Engine::new(ws.pipeline())).await, before);
    // And what is late after the rebuild is what was late before: nothing.
    let detection = Engine::new(ws.pipeline())
        .detect(date("2024-01-05"))
        .await
        .unwrap();
    assert!(detection.late.is_empty(), "{:?}", detection.late);
}

#[tokio::test]
async fn no_backfill_reports_late_partitions_without_reprocessing_them() {
    let ws = Workspace::new();
    two_processed_days(&ws).await;
    ws.generate("2024-01-01", 100, 42).await;
    ws.generate("2024-01-03", 100, 43).await;
    let out = ws.run_cli(&["--date", "2024-01-03", "--no-backfill", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["partition"], "event_time=2024-01-03");
    assert_eq!(json["late"][0]["partition"], "event_time=2024-01-01");
    assert_eq!(json["backfilled"].as_array().unwrap().len(), 0);

    let out = ws.latefill(&[
        "status",
        "--config",
        ws.config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let rows: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(late_partitions(&rows), ["event_time=2024-01-01"]);

    // Without --no-backfill the next run reprocesses it, and the target is right.
    let out = ws.run_cli(&["--date", "2024-01-03", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["backfilled"][0]["partition"], "event_time=2024-01-01");
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        expected_counts("2024-01-01", &[(500, 0), (500, 1), (500, 2), (100, 42)])
    );
}

#[tokio::test]
async fn a_handed_out_plan_is_claimed_until_its_run_takes_it_over() {
    let ws = Workspace::new();
    two_processed_days(&ws).await;
    ws.generate("2024-01-01", 100, 42).await;
    let config = ws.config.to_str().unwrap();
    let plan_path = ws.dir.path().join("plan.json");

    let out = ws.latefill(&[
        "detect",
        "--config",
        config,
        "--date",
        "2024-01-03",
        "--backfill-config",
        plan_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    assert_eq!(
        plan["partitions"],
        serde_json::json!(["event_time=2024-01-01"])
    );
    let run_id = plan["run_id"].as_str().unwrap();

    // A concurrent detection does not hand it out again.
    let out = ws.latefill(&[
        "detect",
        "--config",
        config,
        "--date",
        "2024-01-03",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["late"], serde_json::json!([]));

    // Another run cannot take it: contention, exit 4, nothing written.
    let target_before = table_version(&ws.target_path()).await;
    let out = ws.run_cli(&["--date", "2024-01-01", "--no-backfill"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is being processed by"),
        "{}",
        stderr(&out)
    );
    assert_eq!(table_version(&ws.target_path()).await, target_before);

    // The scheduler's run, with the plan's run id, takes the claim over.
    let out = ws.run_cli(&["--date", "2024-01-01", "--no-backfill", "--run-id", run_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let detection = Engine::new(ws.pipeline())
        .detect(date("2024-01-03"))
        .await
        .unwrap();
    assert!(detection.late.is_empty());
}

/// `status` and `detect` only read: the state table gains no commit from them, not
/// even the detector's cursor, and they still report the late day; the next run saves
/// the cursor once and processes it.
#[tokio::test]
async fn status_and_detect_commit_nothing() {
    let ws = Workspace::new();
    two_processed_days(&ws).await;
    ws.generate("2024-01-01", 50, 99).await;
    let state = ws.dir.path().join("state");
    let before = table_version(&state).await;
    for _ in 0..2 {
        let detect = ws.detect_json(&ws.config, "2024-01-03");
        assert_eq!(
            partitions(&detect["late"]),
            ["event_time=2024-01-01"],
            "{detect}"
        );
        let status = ws.status_json(&ws.config);
        assert_eq!(
            late_partitions(&status),
            ["event_time=2024-01-01"],
            "{status}"
        );
    }
    assert_eq!(
        table_version(&state).await,
        before,
        "status and detect committed"
    );

    ws.generate("2024-01-03", 100, 5).await;
    let run = json(&ws.run_cli(&["--date", "2024-01-03", "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-01-01"],
        "{run}"
    );
    // The run's claims and completions of both days; the cursor is saved with the
    // completion of the run's own day, in the same commit.
    let after = table_version(&state).await.unwrap();
    assert_eq!(
        after,
        before.unwrap() + 4,
        "the cursor costs no commit of its own"
    );
    let status = ws.status_json(&ws.config);
    assert!(late_partitions(&status).is_empty(), "{status}");
}
