//! A transform written in Rust instead of SQL.
//!
//! A program embedding latefill gives its pipeline a function over a DataFusion
//! `DataFrame`, with a version it declares. latefill hands it each partition's rows
//! (the table `source` a SQL transform would read), writes what it returns in place of
//! that partition of the target, and records the version: when the function changes,
//! bump the version, and `status` reports the partitions it processed before as stale.
//!
//! ```sh
//! cargo run --example rust_transform
//! ```

use deltalake::datafusion::functions_aggregate::expr_fn::count;
use deltalake::datafusion::prelude::{col, lit};
use latefill::PartitionDate;
use latefill::datagen::GenerateOptions;
use latefill::engine::{Engine, LateHandling};
use latefill::executor::{Pipeline, Transform};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // The default devices pipeline, with its SQL replaced by a Rust function: the
    // number of iPhones per OS version, per day. The partition column must be kept.
    let iphones_per_version = Transform::from_fn("iphones-per-version/1", |source| {
        source.filter(col("type").eq(lit("iphone")))?.aggregate(
            vec![col("version"), col("event_time")],
            vec![count(lit(1)).alias("devices")],
        )
    });
    let pipeline = Pipeline::default_devices(dir.path())?.with_transform(iphones_per_version);
    let source = pipeline.source.as_str().to_owned();
    let engine = Engine::new(pipeline);

    for day in ["2024-01-01", "2024-01-02"] {
        GenerateOptions::new(&source, day)?
            .with_rows(10_000)
            .write()
            .await?;
        let outcome = engine
            .run_date(PartitionDate::parse(day)?)
            .with_late(LateHandling::ReportOnly)
            .await?;
        println!(
            "{}: {} rows in, {} rows out, transform {}",
            outcome.run.partition,
            outcome.run.rows_read,
            outcome.run.rows_written,
            outcome.run.transform
        );
    }
    for row in engine.status().await? {
        println!(
            "{}: {} by {}",
            row.partition,
            row.status,
            row.transform.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}
