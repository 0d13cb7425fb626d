//! latefill's partition state table: what was processed, at which source version, and
//! who is processing what right now.
//!
//! ```text
//!  run A ──claim──┐                       ┌── state table (Delta) ──────────────────┐
//!  run B ──claim──┼─► read @N, decide, ───►│ partition | status | source_version |  │
//!  run C ─complete┘   commit @N+1 or retry │ lease_expires_at | owner | run_id | ...│
//!                                          └─────────────────────────────────────────┘
//! ```
//!
//! - [`StateTable::claim`] takes one or many partitions, all or none, each only if no
//!   unexpired lease holds it; [`StateTable::complete`] and [`StateTable::fail`] end a
//!   claim. A lease whose owner crashed expires and can be claimed again.
//!   [`StateTable::claim_one`] claims one partition and returns the row it replaced.
//! - [`StateTable::commit_batch`] commits many transitions of one run at once
//!   (completions, releases, claims), each partition on its own terms: a backfill
//!   makes one state commit per batch of partitions.
//! - Rows are keyed by pipeline and partition: pipelines sharing one state table
//!   never see each other's rows, claims or cursors. A handle reads its pipeline's
//!   rows by the pipeline's [`Partitioning`](latefill_core::Partitioning) into
//!   [`PartitionKey`](latefill_core::PartitionKey)s; every other row it writes back
//!   as it was.
//! - Every transition is a compare-and-swap on the table: read at version N, decide,
//!   commit at exactly N+1; when another writer got there first, read again and decide
//!   again after a jittered backoff. Claims are therefore safe across processes and
//!   across hosts sharing the storage. A handle keeps the version it last read or
//!   wrote; it brings delta-rs's snapshot to its own commit (a listing, on an object
//!   store) only when it next reads or commits, so a run's last commit costs nothing
//!   after its put.
//! - Time comes from a [`Clock`], so leases are tested without sleeping
//!   ([`TestClock`]).
//!
//! ```no_run
//! # async fn example() -> latefill_state::Result<()> {
//! use latefill_core::{Granularity, PartitionDate, Partitioning, TableVersion};
//! use latefill_state::StateTable;
//!
//! let url = url::Url::parse("file:///data/latefill_state/").unwrap();
//! let days = Partitioning::new("event_time", Granularity::Day);
//! let state = StateTable::new(url, "devices_daily", days.clone());
//! let partition = days.key(PartitionDate::parse("2024-01-03").unwrap());
//! state.claim(std::slice::from_ref(&partition), "run-1").await?;
//! // ... process the partition at source version 12 ...
//! let at = TableVersion::new(12);
//! state.complete(&partition, "run-1", at, None, Some("sql:1".into())).await?;
//! # Ok(())
//! # }
//! ```

mod clock;
mod error;
mod model;
mod table;

pub use clock::{Clock, SystemClock, TestClock};
pub use error::{Error, Result};
pub use model::{PartitionState, Status};
pub use table::{
    Batch, BatchOutcome, Completion, DEFAULT_LEASE, Planned, StateSnapshot, StateTable,
    default_owner,
};
