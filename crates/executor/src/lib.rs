//! latefill's executor: processes one partition of a source Delta table into a target
//! Delta table with a DataFusion SQL transform.
//!
//! ```text
//!   source (Delta)                        target (Delta)
//!   version V pinned ──► files of D ──►  SQL over `source` ──► replace partition D
//!                      (from the log,     (DataFusion)          in one commit carrying
//!                       never a scan)                           txn(appId, V)
//! ```
//!
//! - [`Pipeline`] is the declaration: source, partition column, target, state table
//!   and the transform SQL, read from a TOML file ([`DEFAULT_PIPELINE_TOML`]).
//! - [`run_partition`] builds a [`RunPartition`]; awaiting it reads the partition at a
//!   pinned source version, runs the SQL and overwrites exactly that partition of the
//!   target. The commit carries a Delta application transaction (`txn`) whose app id
//!   is [`Pipeline::app_id`] and whose version is the source version, so the target's
//!   own log records which source version each partition reflects.
//! - [`Session`] is what runs keep between calls (tables, commit chains, background
//!   checkpoints); the caller owns it and passes it down.
//!
//! The modules, each one concept: `run` (a run, start to end), `source` (the table at
//! a pinned version, a partition's files), `target` (opening, schema, `txn`, log
//! upkeep), `replace` (a partition's data files, then its commit), `preflight` (what
//! is checked before a claim), `fingerprint`, `schema` (Arrow types as Delta stores
//! them), `transform` (SQL or Rust), `pipeline` and `project` (the declarations),
//! `session` and `chain` (what runs keep between calls: tables, each target's commit
//! chain, background checkpoints).
//!
//! ```no_run
//! # async fn example() -> latefill_executor::Result<()> {
//! use latefill_core::PartitionDate;
//! use latefill_executor::{Pipeline, run_partition};
//!
//! let pipeline = Pipeline::from_file("latefill.toml")?;
//! let report = run_partition(&pipeline, PartitionDate::parse("2024-01-03")?).await?;
//! println!("{} rows in, {} rows out", report.rows_read, report.rows_written);
//! # Ok(())
//! # }
//! ```

mod appended;
pub mod audit;
mod chain;
pub mod combine;
mod contended;
mod error;
mod failpoint;
mod fingerprint;
mod group;
mod memory;
mod parquet_hint;
mod pipeline;
mod preflight;
mod project;
mod replace;
mod run;
mod schema;
mod session;
mod source;
mod strategy;
mod target;
mod transform;

pub use appended::{Appended, SinceVersion, appended_since};
pub use error::{Error, Result, display_bytes};
pub use failpoint::{FAILPOINT_ENV, failpoint, pausepoint};
pub use fingerprint::{file_identity, fingerprint};
pub use pipeline::{
    DEFAULT_PIPELINE_TOML, Pipeline, example_pipeline_toml, parse_memory_limit, parse_retention,
    resolve_location,
};
pub use preflight::{check_locations, prefetch, preflight};
pub use project::{Project, same_table};
pub use run::{COMMIT_INFO_KEY, RunPartition, RunReport, run_partition};
pub use session::Session;
pub use source::{
    PartitionInfo, inspect_partition, partition_fingerprints, read_ahead, reads_ahead,
};
pub use strategy::{Choice, Method, Processed, Reads, Strategy, choose_strategy};
pub use target::{processed_partitions, target_txn_version};
pub use transform::{DataFrameTransform, Transform};
