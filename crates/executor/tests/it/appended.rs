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
    delete_where(
        &ws.source_path(),
        "event_time = '2024-01-01' AND type = 'galaxy'",
    )
    .await;
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
    assert!(why.contains("a replaced table"), "{why}");
}

/// Late rows appended to a processed partition, combined into the target's rows by
/// `combined_result`, give exactly what the transform gives over all the
/// partition's rows; for counts, sums, minima and maxima.
#[tokio::test]
async fn late_rows_combined_into_the_partition_equal_a_full_recomputation() {
    use deltalake::datafusion::prelude::SessionContext;
    use latefill_executor::combine::{combinable, combined_result};
    use latefill_executor::run_partition;

    // Each transform, and the same over all of 2024-01-01's source rows (`t`).
    for (sql, recompute) in [
        (
            "SELECT type, version, count(*) AS devices, event_time FROM source \
             GROUP BY type, version, event_time",
            "SELECT type, version, count(*) AS devices, event_time FROM t \
             WHERE event_time = '2024-01-01' GROUP BY type, version, event_time",
        ),
        (
            "SELECT type, count(version) AS n, min(full_name) AS first, max(full_name) AS last, \
             sum(length(full_name)) AS letters, event_time FROM source \
             WHERE version <> '1.0' GROUP BY type, event_time",
            "SELECT type, count(version) AS n, min(full_name) AS first, max(full_name) AS last, \
             sum(length(full_name)) AS letters, event_time FROM t \
             WHERE version <> '1.0' AND event_time = '2024-01-01' GROUP BY type, event_time",
        ),
    ] {
        let ws = Workspace::with_sql(sql);
        let pipeline = ws.pipeline();
        let session = Session::new();
        ws.generate("2024-01-01", 2_000, 1).await;
        ws.generate("2024-01-02", 500, 2).await;
        let processed = run_partition(&pipeline, date("2024-01-01"))
            .with_session(session.clone())
            .await
            .unwrap();
        ws.generate("2024-01-01", 300, 3).await;
        ws.generate("2024-01-01", 200, 4).await;

        let SinceVersion::Appended(appended) = appended_since(
            &session,
            &pipeline,
            date("2024-01-01"),
            processed.source_version,
        )
        .await
        .unwrap() else {
            panic!("only appends happened");
        };
        assert_eq!((appended.files.len(), appended.rows), (2, Some(500)));

        let source = open(&ws.source_path()).await;
        let ctx = SessionContext::new();
        source.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("source", source.table_provider().await.unwrap())
            .unwrap();
        let plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
        let how = combinable(&plan).unwrap();

        let combined = combined_result(&session, &pipeline, date("2024-01-01"), &appended, &how)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let recomputed = sql_on(&url_of(&ws.source_path()), recompute).await;
        assert!(!sorted_lines(&recomputed).is_empty());
        assert_eq!(sorted_lines(&combined), sorted_lines(&recomputed), "{sql}");
    }
}

/// What `run_partition` is told of the partition's last processing, from its report.
fn processed(report: &latefill_executor::RunReport) -> latefill_executor::Processed {
    latefill_executor::Processed {
        source_version: report.source_version,
        transform: Some(report.transform.clone()),
        fingerprint: Some(report.fingerprint.clone()),
    }
}

/// A late run of a processed partition updates it from the late rows alone, says so,
/// and leaves the target equal to a full recomputation; told to replace, or told
/// nothing of the last processing, it replaces.
#[tokio::test]
async fn a_late_run_updates_from_the_appended_rows_unless_told_to_replace() {
    use latefill_executor::{Method, Strategy, run_partition};

    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    ws.generate("2024-01-01", 2_000, 1).await;
    ws.generate("2024-01-02", 500, 2).await;
    let first = run_partition(&pipeline, date("2024-01-01")).await.unwrap();
    assert_eq!(first.strategy, Some(Method::Replace));
    assert!(
        first
            .strategy_reason
            .as_deref()
            .unwrap()
            .contains("not been processed"),
        "{first:?}"
    );
    ws.generate("2024-01-01", 300, 3).await;

    let late = run_partition(&pipeline, date("2024-01-01"))
        .with_processed(processed(&first))
        .await
        .unwrap();
    assert_eq!(late.strategy, Some(Method::Incremental), "{late:?}");
    assert_eq!((late.files_read, late.rows_read), (1, 300), "{late:?}");
    assert!(late.bytes_read > 0 && late.bytes_read < first.bytes_read);
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        recomputed_counts(&ws.source_path(), "2024-01-01").await
    );
    // The commit carries the new source version, as a replace's does.
    let txn = latefill_executor::target_txn_version(
        &Session::new(),
        &pipeline,
        &pipeline.partitioning.key(date("2024-01-01")),
    )
    .await
    .unwrap();
    assert_eq!(txn.and_then(|(_, v)| v), Some(late.source_version));

    ws.generate("2024-01-01", 100, 4).await;
    let forced = run_partition(&pipeline, date("2024-01-01"))
        .with_processed(processed(&late))
        .with_strategy(Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(forced.strategy, Some(Method::Replace));
    assert_eq!(forced.rows_read, 2_400);
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        recomputed_counts(&ws.source_path(), "2024-01-01").await
    );
}

/// The conditions on the target and the state table: a target partition written at
/// another version than the one recorded, or by another transform, is replaced.
#[tokio::test]
async fn a_late_run_replaces_when_the_target_or_the_transform_is_not_as_recorded() {
    use latefill_executor::{Method, run_partition};

    let ws = Workspace::new();
    let pipeline = ws.pipeline();
    ws.generate("2024-01-01", 1_000, 1).await;
    let first = run_partition(&pipeline, date("2024-01-01")).await.unwrap();
    ws.generate("2024-01-01", 200, 2).await;

    let mut stale = processed(&first);
    stale.transform = Some("sql:0000".into());
    let run = run_partition(&pipeline, date("2024-01-01"))
        .with_processed(stale)
        .await
        .unwrap();
    assert_eq!(run.strategy, Some(Method::Replace));
    assert!(
        run.strategy_reason
            .as_deref()
            .unwrap()
            .contains("transform changed"),
        "{run:?}"
    );

    // Recorded at the first version while the target reflects the second.
    ws.generate("2024-01-01", 200, 3).await;
    let run = run_partition(&pipeline, date("2024-01-01"))
        .with_processed(processed(&first))
        .await
        .unwrap();
    assert_eq!(run.strategy, Some(Method::Replace));
    assert!(
        run.strategy_reason
            .as_deref()
            .unwrap()
            .contains("reflects source version"),
        "{run:?}"
    );
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        recomputed_counts(&ws.source_path(), "2024-01-01").await
    );
}
