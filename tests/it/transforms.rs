//! Transforms written in Rust, through the library: what a program embedding
//! latefill gives instead of SQL.

use deltalake::datafusion::functions_aggregate::expr_fn::count;
use deltalake::datafusion::prelude::{col, lit};
use latefill::Engine;
use latefill::PartitionDate;
use latefill::backfill::Selection;
use latefill::engine::{Error, LateHandling};
use latefill::executor::Transform;

use crate::common::*;

/// The default pipeline's SQL, as a DataFrame function with a declared version.
fn devices_per_version(version: &str) -> Transform {
    Transform::from_fn(version, |source| {
        source.aggregate(
            vec![col("type"), col("version"), col("event_time")],
            vec![count(lit(1)).alias("devices")],
        )
    })
}

fn day(d: u32) -> PartitionDate {
    PartitionDate::parse(&format!("2024-04-{d:02}")).unwrap()
}

/// A run of `date` that only reports what is late.
fn report_only(engine: &Engine, date: PartitionDate) -> latefill::engine::RunDate {
    engine.run_date(date).with_late(LateHandling::ReportOnly)
}

/// A Rust transform processes partitions as its SQL twin would, records its declared
/// version, and a new version makes what it processed stale until reprocessed.
#[tokio::test]
async fn a_rust_transform_processes_partitions_and_versions_them() {
    let ws = Workspace::new();
    for d in 1..=3 {
        ws.generate(&day(d).to_string(), 1_000, u64::from(d)).await;
    }
    let pipeline = ws.pipeline().with_transform(devices_per_version("v1"));
    let engine = Engine::new(pipeline.clone());
    for d in 1..=3 {
        let outcome = report_only(&engine, day(d)).await.unwrap();
        assert_eq!(outcome.run.transform, "rust:v1");
    }
    for d in 1..=3 {
        let date = day(d).to_string();
        assert_eq!(
            target_counts(&ws.target_path(), &date).await,
            expected_counts(&date, &[(1_000, u64::from(d))]),
            "{date}"
        );
    }
    let status = engine.status().await.unwrap();
    assert!(
        status
            .iter()
            .all(|r| r.transform.as_deref() == Some("rust:v1") && !r.stale),
        "{status:?}"
    );

    // Version 2 of the transform: everything it has not processed is stale.
    let engine = Engine::new(pipeline.with_transform(devices_per_version("v2")));
    let status = engine.status().await.unwrap();
    assert!(status.iter().all(|r| r.stale), "{status:?}");
    let report = engine
        .backfill(day(1), day(3))
        .with_selection(Selection::Stale)
        .await
        .unwrap();
    assert_eq!(report.processed.len(), 3, "{report:?}");
    let status = engine.status().await.unwrap();
    assert!(
        status
            .iter()
            .all(|r| r.transform.as_deref() == Some("rust:v2") && !r.stale),
        "{status:?}"
    );
}

/// A transform whose plan fails (a column the source lacks) fails the run with its
/// version and DataFusion's reason, before the claim: nothing is written, not even a
/// failure in the state table (the plan alone shows it).
#[tokio::test]
async fn a_failing_rust_transform_is_refused_with_the_reason_before_the_claim() {
    let ws = Workspace::new();
    ws.generate(&day(1).to_string(), 100, 1).await;
    let broken = Transform::from_fn("broken/1", |source| {
        source.select(vec![col("no_such_column"), col("event_time")])
    });
    let engine = Engine::new(ws.pipeline().with_transform(broken));
    let err = report_only(&engine, day(1)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Executor(latefill::executor::Error::InvalidTransform { .. })
        ),
        "{text}"
    );
    assert!(
        text.contains("rust:broken/1") && text.contains("no_such_column"),
        "{text}"
    );
    let status = engine.status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].status, "unprocessed", "{status:?}");
    assert!(
        table_version(&ws.target_path()).await.is_none(),
        "nothing written"
    );
    assert!(
        table_version(&ws.dir.path().join("state")).await.is_none(),
        "no state commit"
    );
}

/// A pipeline made in code, with no file, runs like one read from TOML: the same
/// target, partition by partition; a bad name or a target that is its source is
/// refused when it is made.
#[tokio::test]
async fn a_pipeline_made_in_code_runs_like_one_from_a_file() {
    use latefill::executor::Pipeline;
    use latefill::{Granularity, Partitioning};

    let ws = Workspace::new();
    ws.generate("2024-04-01", 1_000, 1).await;
    ws.generate("2024-04-02", 1_000, 2).await;
    let url = |table: &str| url_of(&ws.dir.path().join(table));
    let days = Partitioning::new("event_time", Granularity::Day);
    let pipeline = Pipeline::new(
        "devices_daily",
        url("devices"),
        days.clone(),
        url("devices_daily"),
        url("state"),
        Transform::Sql(DEFAULT_SQL.into()),
    )
    .unwrap();
    let engine = Engine::new(pipeline);
    for d in 1..=2 {
        let outcome = engine.run_date(day(d)).await.unwrap();
        assert_eq!(outcome.run.partition, format!("event_time={}", day(d)));
    }
    for d in 1..=2 {
        let date = day(d).to_string();
        assert_eq!(
            target_counts(&ws.target_path(), &date).await,
            recomputed_counts(&ws.source_path(), &date).await,
            "{date}"
        );
    }

    let made = |name: &str, target: &str| {
        Pipeline::new(
            name,
            url("devices"),
            days.clone(),
            url(target),
            url("state"),
            Transform::Sql(DEFAULT_SQL.into()),
        )
    };
    let err = made("devices daily", "out").unwrap_err().to_string();
    assert!(
        err.contains("\"devices daily\"") && err.contains("letters, digits"),
        "{err}"
    );
    let err = made("devices_daily", "devices").unwrap_err().to_string();
    assert!(
        err.contains("source and target are the same table"),
        "{err}"
    );
}
