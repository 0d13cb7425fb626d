//! Cursors: later detections read only new commits; damaged logs are errors.

use std::path::PathBuf;

use latefill_detector::{Error, detect_changes};

use crate::fixtures::copy_fixture;

fn log_file(url: &url::Url, version: u64) -> PathBuf {
    url.to_file_path()
        .unwrap()
        .join(format!("_delta_log/{version:020}.json"))
}

/// Appends a commit that adds one file to `date=<date>` with the given dataChange.
fn append_commit(url: &url::Url, version: u64, date: &str, data_change: bool) {
    let line = serde_json::json!({"add": {
        "path": format!("date={date}/part-late-{version}.parquet"),
        "partitionValues": {"date": date},
        "size": 1, "modificationTime": 0, "dataChange": data_change
    }});
    std::fs::write(log_file(url, version), format!("{line}\n")).unwrap();
}

/// The path of the first file added by commit `version` (date=2020-06-01 for 6).
fn added_path(url: &url::Url, version: u64) -> String {
    std::fs::read_to_string(log_file(url, version))
        .unwrap()
        .lines()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some(v.get("add")?.get("path")?.as_str()?.to_owned())
        })
        .unwrap()
}

/// A version the log is known to be listed at bounds what a detection from a cursor
/// reads: a commit after it is left to the next detection (which finds it), and a
/// known version the log does not reach is not trusted.
#[tokio::test]
async fn a_known_latest_version_bounds_the_commits_read() {
    use latefill_core::TableVersion;
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    append_commit(&url, 13, "2020-06-01", true);
    append_commit(&url, 14, "2020-06-02", true);

    let bounded = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .with_latest_known(Some(TableVersion::new(13)))
        .await
        .unwrap();
    assert_eq!(bounded.table_version, 13);
    assert_eq!(bounded.scan.commits_read, 1);
    let change =
        |d: &latefill_detector::Changes, p: &str| d.partition(p).unwrap().last_change_version;
    assert_eq!(change(&bounded, "date=2020-06-01"), 13);
    assert_eq!(
        change(&bounded, "date=2020-06-02"),
        change(&first, "date=2020-06-02")
    );

    let next = detect_changes(&url)
        .with_cursor(bounded.cursor().cloned())
        .await
        .unwrap();
    assert_eq!(next.table_version, 14);
    assert_eq!(change(&next, "date=2020-06-02"), 14);

    // A version past the end of the log: every commit there is, and no more.
    let past = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .with_latest_known(Some(TableVersion::new(20)))
        .await
        .unwrap();
    assert_eq!(past.table_version, 14);
    assert_eq!(change(&past, "date=2020-06-02"), 14);
}

#[tokio::test]
async fn a_second_detection_reads_only_new_commits() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    assert_eq!(first.table_version, 12);
    let cursor = first.cursor().cloned();

    // Old commits become unreadable: a detection that re-read them would fail. The
    // cursor's own commit (12) stays: its digest is read again, to check that the
    // table is still the one the cursor was made on.
    for v in 0..12 {
        std::fs::write(log_file(&url, v), b"{ this is not json").unwrap();
    }
    append_commit(&url, 13, "2020-06-01", true);
    append_commit(&url, 14, "2020-06-02", false);

    let second = detect_changes(&url).with_cursor(cursor).await.unwrap();
    assert_eq!(second.table_version, 14);
    assert_eq!(second.scan.mode, "cursor");
    assert_eq!(second.scan.commits_read, 2);
    let p1 = second.partition("date=2020-06-01").unwrap();
    assert_eq!(p1.last_change_version, 13);
    // dataChange=false does not count: 06-02 keeps its change from the first scan.
    let p2 = second.partition("date=2020-06-02").unwrap();
    assert_eq!(
        p2.last_change_version,
        first
            .partition("date=2020-06-02")
            .unwrap()
            .last_change_version
    );
    assert_eq!(
        second
            .partition("date=2020-06-03")
            .unwrap()
            .last_change_version,
        12
    );

    // The corruption is real: reading the whole log fails, naming the commit.
    let err = detect_changes(&url).await.unwrap_err();
    assert!(
        matches!(err, Error::CorruptCommit { version: 0, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_cursor_with_nothing_new_answers_without_reading_commits() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    let again = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .await
        .unwrap();
    assert_eq!(again.scan.commits_read, 0);
    assert_eq!(again.partitions, first.partitions);
}

#[tokio::test]
async fn a_commit_missing_in_the_middle_is_an_error() {
    let (_tmp, url) = copy_fixture("checkpoints");
    std::fs::remove_file(log_file(&url, 7)).unwrap();
    let err = detect_changes(&url).await.unwrap_err();
    assert!(
        matches!(err, Error::MissingCommit { version: 7, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_corrupt_commit_is_an_error_naming_it() {
    let (_tmp, url) = copy_fixture("cdf-table");
    std::fs::write(log_file(&url, 2), b"{\"add\": {\"path\": 3}}\n").unwrap();
    let err = detect_changes(&url).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::CorruptCommit {
                version: 2,
                line: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_remove_without_partition_values_takes_its_adds_partition() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    // Remove a file added at version 6 (date=2020-06-01) without partitionValues.
    let path = added_path(&url, 6);
    let line =
        serde_json::json!({"remove": {"path": path, "dataChange": true, "deletionTimestamp": 1}});
    std::fs::write(log_file(&url, 13), format!("{line}\n")).unwrap();

    // Through the cursor (the add is older than the cursor) and through a full read.
    let via_cursor = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .await
        .unwrap();
    let full = detect_changes(&url).await.unwrap();
    for changes in [via_cursor, full] {
        assert_eq!(
            changes
                .partition("date=2020-06-01")
                .unwrap()
                .last_change_version,
            13
        );
    }
}

#[tokio::test]
async fn a_deletion_vector_update_is_a_change_of_its_partition() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    let path = added_path(&url, 6);
    // A DELETE with deletion vectors: the same file removed and re-added with a DV.
    let dv = serde_json::json!({
        "storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^", "offset": 1,
        "sizeInBytes": 36, "cardinality": 2
    });
    let remove = serde_json::json!({"remove": {
        "path": path, "dataChange": true, "deletionTimestamp": 1,
        "partitionValues": {"date": "2020-06-01"}, "size": 1502
    }});
    let add = serde_json::json!({"add": {
        "path": path, "partitionValues": {"date": "2020-06-01"}, "size": 1502,
        "modificationTime": 1, "dataChange": true, "deletionVector": dv
    }});
    std::fs::write(log_file(&url, 13), format!("{remove}\n{add}\n")).unwrap();
    let next = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .await
        .unwrap();
    assert_eq!(
        next.partition("date=2020-06-01")
            .unwrap()
            .last_change_version,
        13
    );
    assert_eq!(
        next.partition("date=2020-06-02")
            .unwrap()
            .last_change_version,
        8
    );
}

#[tokio::test]
async fn a_table_recreated_past_the_cursor_is_not_continued_from_it() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    assert_eq!(first.table_version, 12);
    // Another table's commit 12 (dropped and re-created, now as long again), then a
    // commit 13 that alone would say only 2020-06-01 changed.
    append_commit(&url, 12, "2020-06-03", true);
    append_commit(&url, 13, "2020-06-01", true);
    let next = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .await
        .unwrap();
    let replaced = next.replaced.as_ref().expect("the replacement is reported");
    assert!(replaced.reason.contains("commit 12"), "{replaced:?}");
    assert_eq!(next.scan.mode, "full", "the whole log is read afresh");
    // A plain full read of the same log gives the same partitions.
    let full = detect_changes(&url).await.unwrap();
    assert_eq!(next.partitions, full.partitions);
    assert!(full.replaced.is_none());
}

#[tokio::test]
async fn a_table_recreated_with_a_shorter_log_is_not_continued_from_the_cursor() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    // Drop the table's log and write a new one of two commits.
    let log = url.to_file_path().unwrap().join("_delta_log");
    std::fs::remove_dir_all(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    let metadata = serde_json::json!({"metaData": {
        "id": "another-table", "format": {"provider": "parquet", "options": {}},
        "schemaString": "{\"type\":\"struct\",\"fields\":[]}",
        "partitionColumns": ["date"], "configuration": {}, "createdTime": 1
    }});
    let protocol = serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}});
    std::fs::write(log_file(&url, 0), format!("{protocol}\n{metadata}\n")).unwrap();
    append_commit(&url, 1, "2020-06-09", true);
    let next = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .await
        .unwrap();
    let replaced = next.replaced.as_ref().expect("the replacement is reported");
    assert_eq!(replaced.table_id.as_deref(), Some("another-table"));
    assert_eq!(next.table_version, 1);
    let names: Vec<&str> = next
        .partitions
        .iter()
        .map(|p| p.partition.as_str())
        .collect();
    assert_eq!(names, ["date=2020-06-09"]);
}

#[tokio::test]
async fn a_table_replaced_in_place_is_recognised_by_its_new_id() {
    // CREATE OR REPLACE: the same log goes on with a metaData of another table id.
    let (_tmp, url) = copy_fixture("checkpoints");
    let first = detect_changes(&url).await.unwrap();
    let metadata = serde_json::json!({"metaData": {
        "id": "a-new-table-id", "format": {"provider": "parquet", "options": {}},
        "schemaString": "{\"type\":\"struct\",\"fields\":[]}",
        "partitionColumns": ["date"], "configuration": {}, "createdTime": 2
    }});
    std::fs::write(log_file(&url, 13), format!("{metadata}\n")).unwrap();
    let next = detect_changes(&url)
        .with_cursor(first.cursor().cloned())
        .await
        .unwrap();
    let replaced = next.replaced.as_ref().expect("the replacement is reported");
    assert_eq!(replaced.table_id.as_deref(), Some("a-new-table-id"));
    assert_eq!(
        replaced.previous_table_id,
        first.table_id().map(str::to_owned)
    );
    assert!(replaced.reason.contains("table id changed"), "{replaced:?}");
}
