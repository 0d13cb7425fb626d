//! latefill: a late-data-aware Delta Lake backfill engine.
//!
//! Daily pipelines process one partition per day, but data keeps arriving for days
//! already processed. latefill records what it processed at which source version,
//! detects partitions whose data changed since, and reprocesses them.
//!
//! This crate is the facade over the workspace's crates:
//!
//! ```text
//!            latefill (this crate: facade, demo, `latefill` binary)
//!          /          |             \               \
//!   latefill-state  latefill-detector  latefill-executor  latefill-datagen
//!   (state table)   (Delta log reader) (SQL per partition) (device data)
//! ```
//!
//! ```no_run
//! # async fn example() -> Result<(), latefill::executor::Error> {
//! use latefill::executor::{PartitionDate, Pipeline, run_partition};
//!
//! let pipeline = Pipeline::from_file("latefill.toml")?;
//! let report = run_partition(&pipeline, PartitionDate::parse("2024-01-03")?).await?;
//! println!("{}: {} rows out", report.partition, report.rows_written);
//! # Ok(())
//! # }
//! ```

pub mod backfill;
pub mod demo;
pub mod engine;
pub mod plan;

pub use engine::{Engine, RunDateOptions, RunOutcome};

pub use latefill_datagen as datagen;
pub use latefill_detector as detector;
pub use latefill_executor as executor;
pub use latefill_state as state;
