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
//! The [`Engine`] is the API for schedulers of your own: every call is async and
//! returns typed results and errors, and any number of engines (in one process or many,
//! on one host or several sharing the storage) may work the same pipeline at once.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use latefill::Engine;
//! use latefill::backfill::Selection;
//! use latefill::PartitionDate;
//! use latefill::executor::Pipeline;
//!
//! let engine = Engine::new(Pipeline::from_file("latefill.toml")?);
//!
//! // One day, then whatever is late before it, reprocessed.
//! let outcome = engine
//!     .run_date(PartitionDate::parse("2024-01-08")?)
//!     .await?;
//! println!("{} late partitions reprocessed", outcome.backfilled.len());
//!
//! // Detection and planning alone.
//! let detection = engine
//!     .detect(PartitionDate::parse("2024-01-08")?)
//!     .with_lookback(30)
//!     .await?;
//! println!("late: {:?}", detection.late);
//!
//! // A range, two partitions at a time.
//! let report = engine
//!     .backfill(PartitionDate::parse("2024-01-01")?, PartitionDate::parse("2024-01-31")?)
//!     .with_concurrency(2)
//!     .with_selection(Selection::OnlyLate)
//!     .await?;
//! println!("{} processed, {} skipped", report.processed.len(), report.skipped.len());
//!
//! // The state table, with what is late.
//! for row in engine.status().await? {
//!     println!("{} {} late={}", row.partition, row.status, row.late);
//! }
//!
//! // Before the runtime ends: a state checkpoint a call left being written.
//! latefill::settle().await;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embedded_scheduler.rs` runs all of this on generated data.

/// The README's Rust examples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod backfill;
#[cfg(feature = "cli")]
pub mod cli;
pub mod engine;
mod error;
pub mod plan;
pub mod project;

pub use backfill::{BackfillRange, BackfillReport, Selection};
pub use engine::{Engine, Error, RunOutcome};
pub use error::class_of;

pub use latefill_core::background::settle;
pub use latefill_core::storage;
pub use latefill_core::{
    ErrorClass, Granularity, InvalidPeriod, PartitionDate, PartitionKey, Partitioning, RunId,
    SourcePartition, TableVersion, UnrecognisedPartition,
};
pub use latefill_datagen as datagen;
pub use latefill_detector as detector;
pub use latefill_executor as executor;
pub use latefill_state as state;
