//! The state table's error type.

use latefill_core::PartitionKey;
use url::Url;

/// Errors from the state table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A partition is held by an unexpired lease of another run.
    #[error(
        "partition {partition} is being processed by {owner} (run {run_id}) until {lease_expires_at}; \
         wait for it, or for the lease to expire if that process died"
    )]
    Claimed {
        /// The partition.
        partition: PartitionKey,
        /// Who holds it, `host:pid`.
        owner: String,
        /// The run holding it.
        run_id: String,
        /// When the lease expires (RFC 3339).
        lease_expires_at: String,
    },
    /// A planned claim found the partition changed since it was planned: another run
    /// processed or claimed it in between.
    #[error(
        "partition {partition} changed since it was planned (another run took care of it); \
         not claimed"
    )]
    ChangedSincePlanned {
        /// The partition.
        partition: PartitionKey,
    },
    /// A run tried to complete or fail a partition it no longer holds.
    #[error(
        "run {run_id} no longer holds partition {partition} (its lease expired and {holder} took it); \
         the result of this run was not recorded"
    )]
    LeaseLost {
        /// The partition.
        partition: PartitionKey,
        /// The run that tried.
        run_id: String,
        /// Who holds it now, or `nobody`.
        holder: String,
    },
    /// A repair by hand names a partition the state table has no row for.
    #[error(
        "the state table {table} has no row for partition {partition} of pipeline {pipeline}; \
         `latefill status` lists the partitions it has"
    )]
    NoSuchPartition {
        /// The state table.
        table: Url,
        /// The pipeline.
        pipeline: String,
        /// The partition.
        partition: PartitionKey,
    },
    /// `state release` of a partition that no run holds.
    #[error("partition {partition} is not claimed (its status is {status}); nothing to release")]
    NotClaimed {
        /// The partition.
        partition: PartitionKey,
        /// Its status.
        status: String,
    },
    /// Compare-and-swap kept losing to other writers.
    #[error("{table}: gave up after {attempts} attempts: other writers kept committing first")]
    Contention {
        /// The state table.
        table: Url,
        /// Attempts made.
        attempts: usize,
    },
    /// The state table was written by a latefill whose rows did not record their
    /// pipeline: they cannot be told apart, so they are not read at all.
    #[error(
        "state table {table} was written by an older latefill, whose rows do not say which \
         pipeline they belong to; move it away (or set `state.table` to a new location) and \
         run `latefill state rebuild --config <pipeline file>` for each pipeline: it restores \
         the state from the target tables"
    )]
    NoPipelineColumn {
        /// The state table.
        table: Url,
    },
    /// The state table's Delta log is damaged.
    #[error(
        "state table {source}. Restore that file from a backup (a \
         torn last commit that a crashed writer left may be deleted instead); if it cannot \
         be restored, move the state table away and run `latefill state rebuild`"
    )]
    DamagedLog {
        /// The state table.
        table: Url,
        /// What the log reader found, naming the version.
        #[source]
        source: latefill_detector::Error,
    },
    /// A row of the state table cannot be read.
    #[error("{table}: the state table is malformed: {reason}")]
    Malformed {
        /// The state table.
        table: Url,
        /// What is wrong.
        reason: String,
    },
    /// The store cannot be trusted with commits, or could not be checked.
    #[error(transparent)]
    Store(#[from] latefill_core::storage::NewTableError),
    /// Storage or Delta failed.
    #[error("{action} {table}: {source}")]
    Delta {
        /// What was being done.
        action: &'static str,
        /// The table.
        table: Url,
        /// The underlying error.
        #[source]
        source: deltalake::DeltaTableError,
    },
}

impl Error {
    /// The partition a per-partition error is about (a claim refused, a lease lost).
    pub fn partition(&self) -> Option<&PartitionKey> {
        match self {
            Error::Claimed { partition, .. }
            | Error::ChangedSincePlanned { partition }
            | Error::LeaseLost { partition, .. } => Some(partition),
            _ => None,
        }
    }

    /// The class of this error.
    pub fn class(&self) -> latefill_core::ErrorClass {
        use latefill_core::ErrorClass;
        match self {
            Error::Claimed { .. }
            | Error::ChangedSincePlanned { .. }
            | Error::LeaseLost { .. }
            | Error::Contention { .. } => ErrorClass::Contention,
            Error::NoSuchPartition { .. } | Error::NotClaimed { .. } => ErrorClass::Usage,
            Error::NoPipelineColumn { .. } | Error::DamagedLog { .. } | Error::Malformed { .. } => {
                ErrorClass::Data
            }
            Error::Store(e) if e.is_usage() => ErrorClass::Usage,
            Error::Delta { .. } | Error::Store(_) => ErrorClass::Storage,
        }
    }
}

/// `Result` with the state table's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
