//! The ground floor of latefill: what every other crate shares, and nothing else.
//!
//! ```text
//!   latefill (engine, planning, backfill, projects; the binary)
//!      │
//!      ├── latefill-executor ── latefill-detector ──┐
//!      ├── latefill-state ──────────────────────────┤
//!      └── latefill-datagen ────────────────────────┴── latefill-core
//!                                                    partitions · ErrorClass · storage
//! ```
//!
//! - [`partition`]: the periods a pipeline processes ([`PartitionDate`],
//!   [`Granularity`]), how a table's partition column writes them ([`Partitioning`])
//!   and the names that key them ([`PartitionKey`]); a source table's own partitions
//!   ([`SourcePartition`]).
//! - [`RunId`]: who holds a claim; [`TableVersion`]: a table's commit number.
//! - [`ErrorClass`]: whose fault an error is, which every crate's error tells and the
//!   binary maps to exit codes.
//! - [`storage`]: where tables live (local paths and object stores, opened one way),
//!   tables kept between calls, the new-table guard, and store failures a user can fix.

pub mod background;
mod class;
pub mod partition;
mod run_id;
pub mod storage;
mod version;

pub use class::ErrorClass;
pub use partition::{
    Granularity, InvalidPeriod, PartitionDate, PartitionKey, Partitioning, SourcePartition,
    UnrecognisedPartition,
};
pub use run_id::RunId;
pub use version::TableVersion;
