//! `appended_since`: whether a partition's source data only grew since a version.

use latefill_core::{PartitionDate, TableVersion};
use latefill_executor::{Session, SinceVersion, appended_since};
use latefill_testkit::*;

fn date(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

async fn since(ws: &Workspace, day: &str, version: u64) -> SinceVersion {
    appended_since(
        &Session::new(),
        &ws.pipeline(),
        date(day),
        TableVersion::new(version),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn appends_to_a_partition_are_its_added_files_and_nothing_else_counts() {
    let ws = Workspace::new();
    let processed_at = ws.generate("2024-01-01", 1_000, 1).await;
    ws.generate("2024-01-02", 400, 2).await;
    ws.generate("2024-01-01", 200, 3).await;
    let latest = ws.generate("2024-01-01", 300, 4).await;

    let SinceVersion::Appended(appended) = since(&ws, "2024-01-01", processed_at).await else {
        panic!("only appends happened");
    };
    assert_eq!(appended.at, latest);
    assert_eq!(appended.files.len(), 2, "{appended:?}");
    assert!(
        appended
            .files
            .iter()
            .all(|f| f.starts_with("event_time=2024-01-01/"))
    );
    assert_eq!(appended.rows, Some(500));
    assert!(appended.bytes > 0);

    // Nothing since the latest version; the other partition gained nothing since its
    // own write either.
    let SinceVersion::Appended(none) = since(&ws, "2024-01-01", latest).await else {
        panic!("nothing happened");
    };
    assert!(none.files.is_empty() && none.rows == Some(0), "{none:?}");
    let SinceVersion::Appended(other) = since(&ws, "2024-01-02", processed_at + 1).await else {
        panic!("nothing happened to 2024-01-02");
    };
    assert!(other.files.is_empty(), "{other:?}");
}

#[tokio::test]
async fn a_delete_or_a_compaction_is_a_change_and_names_the_file() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 500, 1).await;
    let before_delete = ws.generate("2024-01-01", 500, 2).await;
    open(&ws.source_path())
        .await
        .delete()
        .with_predicate("event_time = '2024-01-01' AND type = 'galaxy'")
        .await
        .unwrap();
    let SinceVersion::Changed(why) = since(&ws, "2024-01-01", before_delete).await else {
        panic!("a delete is not an append");
    };
    assert!(
        why.contains("event_time=2024-01-01") && why.contains("was removed"),
        "{why}"
    );

    // A compaction changes no rows, yet rewrites the files: not an append either.
    let before_compaction = table_version(&ws.source_path()).await.unwrap();
    ws.generate("2024-01-01", 100, 3).await;
    let (_, metrics) = open(&ws.source_path()).await.optimize().await.unwrap();
    assert!(metrics.num_files_removed >= 2);
    let SinceVersion::Changed(why) = since(&ws, "2024-01-01", before_compaction).await else {
        panic!("a compaction is not an append");
    };
    assert!(why.contains("compaction"), "{why}");
}

#[tokio::test]
async fn a_version_the_source_cannot_load_is_a_change() {
    let ws = Workspace::new();
    let latest = ws.generate("2024-01-01", 100, 1).await;
    let SinceVersion::Changed(why) = since(&ws, "2024-01-01", latest + 5).await else {
        panic!("a version beyond the latest cannot be compared");
    };
    assert!(why.contains("can no longer be read"), "{why}");
}
