//! latefill's late-data detector: which partitions of a Delta table changed, and at
//! which version, read straight from the table's `_delta_log`.
//!
//! ```text
//!   _delta_log/                      Fold                        Changes
//!   ├─ 00..05.checkpoint.parquet ─►  add/remove with        ─►  partition -> last change
//!   ├─ 00..06.json                   dataChange = true,         version (+ exact flag)
//!   ├─ 00..07.json                   named by partitionValues   + a Cursor for next time
//!   └─ ...                           (logical names)
//! ```
//!
//! - Only `add` and `remove` actions with `dataChange = true` count (deletion-vector
//!   updates are such pairs); compaction (`dataChange = false`) and `cdc` files do not.
//! - Partitions are named from `partitionValues`, never from paths: `a=1/b=x`, nulls as
//!   `__HIVE_DEFAULT_PARTITION__`, logical column names under column mapping. A
//!   `remove` without partition values takes those of the `add` of the same path.
//! - A [`Cursor`] makes the next detection read only newer commits: it probes
//!   `version+1, version+2, ...` without listing the log, so its cost grows with new
//!   commits, not with the table's history.
//! - Where log cleanup removed commits an answer needs, the detection says so
//!   ([`Changes::exact`] is `false`) and answers conservatively: every partition that
//!   may have changed in the lost commits is reported as changed.
//! - A cursor records the table's id and a digest of the commit it ended at. A table
//!   that was dropped and re-created, or replaced, is recognised
//!   ([`Changes::replaced`]): its whole log is read afresh and the cursor is never
//!   applied to it.
//!
//! ```no_run
//! # async fn example() -> latefill_detector::Result<()> {
//! let table = url::Url::parse("file:///data/devices/").unwrap();
//! let changes = latefill_detector::detect_changes(&table)
//!     .with_partition_column("event_time")
//!     .await?;
//! println!("{} partitions at version {}", changes.partitions.len(), changes.table_version);
//! # Ok(())
//! # }
//! ```

mod detect;
mod error;
mod history;
mod log;
mod naming;

pub use detect::{
    Changes, Cursor, DetectChanges, PartitionChange, Replacement, ScanStats, detect_changes,
};
pub use error::{Error, Result};
pub use history::{CommitChanges, History, change_history};
pub use log::{LogBounds, check_log, log_bounds, log_damage};
pub use naming::{NULL_PARTITION_VALUE, PartitionNaming};
