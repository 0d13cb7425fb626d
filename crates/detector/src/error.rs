//! The detector's error type.

use latefill_core::ErrorClass;
use url::Url;

/// Errors from reading a table's Delta log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no Delta log at the location.
    #[error("no Delta table at {table}: {reason}")]
    NotATable {
        /// The table URL.
        table: Url,
        /// What was found instead.
        reason: String,
    },
    /// A commit file cannot be parsed.
    #[error(
        "{table}: commit {version} is corrupt at line {line}: {reason}; the table's log is damaged"
    )]
    CorruptCommit {
        /// The table URL.
        table: Url,
        /// The commit's version.
        version: u64,
        /// The 1-based line.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A checkpoint cannot be read.
    #[error("{table}: checkpoint {version} is unreadable: {reason}")]
    CorruptCheckpoint {
        /// The table URL.
        table: Url,
        /// The checkpoint's version.
        version: u64,
        /// Why.
        reason: String,
    },
    /// A commit is missing between two that exist, where no checkpoint covers it.
    #[error(
        "{table}: commit {version} is missing from the log although commit {later} exists; \
         the log is damaged or was edited by hand"
    )]
    MissingCommit {
        /// The table URL.
        table: Url,
        /// The missing version.
        version: u64,
        /// A later version that exists.
        later: u64,
    },
    /// The table is not partitioned by the column asked for.
    #[error(
        "{table} is not partitioned by {column:?} (its partition columns: {actual:?}); \
         use one of its partition columns"
    )]
    NotPartitionedBy {
        /// The table URL.
        table: Url,
        /// The column asked for.
        column: String,
        /// The table's partition columns.
        actual: Vec<String>,
    },
    /// The log has no metadata action to name partitions with.
    #[error("{table}: no metaData action found in the log up to version {version}")]
    NoMetadata {
        /// The table URL.
        table: Url,
        /// The last version read.
        version: u64,
    },
    /// A remove action without partition values whose add cannot be found.
    #[error(
        "{table}: commit {version} removes {path} without partitionValues, and no add of that \
         path is in the log; its partition cannot be determined"
    )]
    UnresolvedRemove {
        /// The table URL.
        table: Url,
        /// The commit's version.
        version: u64,
        /// The file path.
        path: String,
    },
    /// A version asked for is beyond the table's latest.
    #[error("{table} has no version {requested}: the latest is {latest}")]
    VersionNotFound {
        /// The table URL.
        table: Url,
        /// The version asked for.
        requested: u64,
        /// The latest version.
        latest: u64,
    },
    /// Storage failed.
    #[error("reading the log of {table}: {source}")]
    Storage {
        /// The table URL.
        table: Url,
        /// The object store's error.
        #[source]
        source: deltalake::ObjectStoreError,
    },
    /// Building the table's storage failed.
    #[error("opening {table}: {source}")]
    Delta {
        /// The table URL.
        table: Url,
        /// The underlying error.
        #[source]
        source: deltalake::DeltaTableError,
    },
}

impl Error {
    /// Whether this is damage in a table's log: a corrupt or torn commit, an
    /// unreadable checkpoint, a missing commit.
    pub fn is_log_damage(&self) -> bool {
        matches!(
            self,
            Error::CorruptCommit { .. }
                | Error::CorruptCheckpoint { .. }
                | Error::MissingCommit { .. }
        )
    }

    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Storage { .. } | Error::Delta { .. } => ErrorClass::Storage,
            Error::NotATable { .. }
            | Error::CorruptCommit { .. }
            | Error::CorruptCheckpoint { .. }
            | Error::MissingCommit { .. }
            | Error::NotPartitionedBy { .. }
            | Error::NoMetadata { .. }
            | Error::UnresolvedRemove { .. }
            | Error::VersionNotFound { .. } => ErrorClass::Data,
        }
    }
}

/// `Result` with the detector's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
