//! The executor's error type.

use std::path::PathBuf;

use deltalake::DeltaTableError;
use deltalake::datafusion::error::DataFusionError;
use latefill_core::{ErrorClass, PartitionKey, TableVersion};
use url::Url;

/// Errors from declaring or running a pipeline.
///
/// The variants fall into classes that the CLI maps to exit codes, see
/// [`Error::class`]: the caller's configuration or arguments, the data, and broken
/// invariants (bugs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A partition value is not of the pipeline's granularity (`YYYY-MM-DD` for
    /// days).
    #[error("invalid date {value:?}: expected {expected}")]
    InvalidDate {
        /// The value as given.
        value: String,
        /// What was expected, e.g. `a calendar date written YYYY-MM-DD, e.g. 2024-01-03`.
        expected: &'static str,
    },

    /// A partition name that is not one of the pipeline's.
    #[error(
        "invalid partition {value:?}: pipeline {pipeline} names its partitions like \
         {expected:?} (or give the period alone)"
    )]
    InvalidPartitionName {
        /// The name as given.
        value: String,
        /// The pipeline.
        pipeline: String,
        /// A name of the pipeline's form.
        expected: String,
    },

    /// The pipeline file cannot be read.
    #[error("cannot read pipeline file {}: {source}; create one with `latefill init`", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The pipeline file is not a valid declaration.
    #[error("invalid pipeline file {}: {message}", path.display())]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },

    /// A table location in the pipeline is not a path or URL.
    #[error("invalid {role} table location {location:?}: {reason}")]
    InvalidLocation {
        /// `source`, `target` or `state`.
        role: &'static str,
        /// The location as given.
        location: String,
        /// Why it was rejected.
        reason: String,
    },

    /// There is no Delta table at the source location.
    #[error(
        "no Delta table at source {table}: {reason}; check `source.table` in the pipeline file"
    )]
    SourceNotFound {
        /// The source URL.
        table: Url,
        /// What the storage said.
        reason: String,
    },

    /// The requested source version does not exist.
    #[error("source {table} has no version {requested}: the latest is {latest}")]
    SourceVersionNotFound {
        /// The source URL.
        table: Url,
        /// The version asked for.
        requested: TableVersion,
        /// The latest version.
        latest: TableVersion,
    },

    /// The requested source version exists no more: log cleanup removed the commits
    /// that rebuild it, or VACUUM removed its data files.
    #[error(
        "source {table} version {requested} can no longer be read: {reason}; \
         the oldest readable version is {oldest} (the latest is {latest}); \
         pass a version from {oldest} on, or none to read the latest"
    )]
    SourceVersionUnavailable {
        /// The source URL.
        table: Url,
        /// The version asked for.
        requested: TableVersion,
        /// What removed it.
        reason: String,
        /// The oldest version that can be read (for the partition asked for, when
        /// data files were vacuumed).
        oldest: TableVersion,
        /// The latest version.
        latest: TableVersion,
    },

    /// The source is not partitioned by the pipeline's partition column.
    #[error(
        "source {table} is not partitioned by {column:?} (its partition columns: {actual:?}); \
         set `source.partition_column` to one of them"
    )]
    NotPartitionedBy {
        /// The source URL.
        table: Url,
        /// The pipeline's partition column.
        column: String,
        /// The table's partition columns.
        actual: Vec<String>,
    },

    /// The period column is of a type that holds no period unless a format is
    /// declared (an integer day such as 20240503).
    #[error(
        "source {table} column {column:?} is {data_type}, which holds a {granularity} only \
         in a declared format: set `partition_format` in the pipeline's [source] section, \
         e.g. partition_format = \"{example}"
    )]
    PeriodColumnType {
        /// The source URL.
        table: Url,
        /// The period column.
        column: String,
        /// Its type.
        data_type: String,
        /// The pipeline's granularity.
        granularity: String,
        /// An example setting for the granularity.
        example: &'static str,
    },

    /// No value of the period column is a period of the pipeline's granularity.
    #[error(
        "source {table} column {column:?} holds values like {value:?}, none of them {expected}; \
         if they are periods written another way, declare it with `partition_format` in the \
         pipeline's [source] section (e.g. \"%Y%m%d\" for 20240503, \"%Y/%m/%d\" for \
         2024/05/03), or set `source.partition_column` and `granularity` to match"
    )]
    PeriodColumnValues {
        /// The source URL.
        table: Url,
        /// The period column.
        column: String,
        /// One of its values.
        value: String,
        /// What a value should be.
        expected: &'static str,
    },

    /// The partition has no data files at the pinned version.
    #[error(
        "source {table} has no data in partition {partition} at version {version}; \
         to write an empty partition, pass --allow-empty (allow_empty=True in Python, \
         with_allow_empty(true) in Rust)"
    )]
    PartitionEmpty {
        /// The source URL.
        table: Url,
        /// The partition, e.g. `event_time=2024-01-09`.
        partition: PartitionKey,
        /// The pinned source version.
        version: TableVersion,
    },

    /// An audit of severity `error` found offending rows in the partition's result:
    /// nothing was written to the target.
    #[error(
        "audit {audit} failed on {partition}: {message}; nothing was written to the target{}",
        samples_text(samples)
    )]
    AuditFailed {
        /// The partition.
        partition: PartitionKey,
        /// The audit's name.
        audit: String,
        /// What it found.
        message: String,
        /// Up to 5 offending rows, as JSON objects.
        samples: Vec<serde_json::Value>,
    },

    /// An audit could not run (its SQL does not parse, names an unknown column...).
    #[error("{0}")]
    AuditInvalid(String),

    /// The transform SQL does not parse or does not plan against the source.
    #[error("the transform SQL is invalid: {source}\nSQL: {sql}")]
    InvalidSql {
        /// The SQL as declared.
        sql: String,
        /// DataFusion's explanation.
        #[source]
        source: DataFusionError,
    },

    /// A Rust transform could not build its plan over the source.
    #[error("the transform {version} failed on the partition's rows: {source}")]
    InvalidTransform {
        /// The transform's version.
        version: String,
        /// DataFusion's explanation.
        #[source]
        source: DataFusionError,
    },

    /// The transform's result lacks the partition column.
    #[error(
        "the transform's result has no column {column:?} (it has {columns:?}); \
         select the partition column so each row lands in its partition"
    )]
    MissingPartitionColumn {
        /// The partition column.
        column: String,
        /// The result's columns.
        columns: Vec<String>,
    },

    /// The transform's result does not fit the existing target table.
    #[error(
        "the transform's result does not match target {table}: {difference}; \
         change the SQL or write to a new target table"
    )]
    SchemaMismatch {
        /// The target URL.
        table: Url,
        /// The first difference, e.g. `column "devices": target has Int64, result has Utf8`.
        difference: String,
    },

    /// Running the transform failed on the data.
    #[error("processing {partition} failed: {source}")]
    Execution {
        /// The partition.
        partition: PartitionKey,
        /// DataFusion's error.
        #[source]
        source: DataFusionError,
    },

    /// The transform needed more memory than the pipeline's memory limit, even
    /// spilling to disk.
    #[error(
        "processing {partition} needs more memory than the limit of {} allows, even \
         spilling to disk; raise --memory-limit (transform.memory_limit), or split the \
         work into smaller partitions: {detail}",
        display_bytes(*limit)
    )]
    MemoryLimit {
        /// The partition.
        partition: PartitionKey,
        /// The limit, in bytes.
        limit: u64,
        /// What DataFusion said: which operator asked for how much, and the largest
        /// consumers.
        detail: String,
    },

    /// The target commit conflicted with a concurrent commit that touched the same
    /// partition (another rewrite, a compaction, a delete), again and again.
    #[error(
        "writing {partition} to {table} kept conflicting with concurrent commits to the same \
         partition ({attempts} attempts): {source}"
    )]
    TargetConflict {
        /// The target URL.
        table: Url,
        /// The partition.
        partition: PartitionKey,
        /// Attempts made.
        attempts: usize,
        /// The last conflict.
        #[source]
        source: DeltaTableError,
    },

    /// A table's Delta log is damaged: a torn or corrupt commit, an unreadable
    /// checkpoint, a missing commit.
    #[error(
        "{role} table {source}. Restore that file from a backup \
         (a torn last commit that a crashed writer left may be deleted instead), then run again"
    )]
    DamagedLog {
        /// `source` or `target`.
        role: &'static str,
        /// The table URL.
        table: Url,
        /// What the log reader found, naming the version.
        #[source]
        source: latefill_detector::Error,
    },

    /// Reading or writing a Delta table failed.
    #[error("{action} {table}: {source}")]
    Delta {
        /// What was being done, e.g. `writing target`.
        action: &'static str,
        /// The table URL.
        table: Url,
        /// The underlying error.
        #[source]
        source: DeltaTableError,
    },

    /// The target's store cannot be trusted with commits, or could not be checked.
    #[error(transparent)]
    Store(#[from] latefill_core::storage::NewTableError),

    /// A broken invariant: a bug in latefill, not in the input.
    #[error("internal error (a bug in latefill, please report it): {0}")]
    Internal(String),
}

/// `Result` with the executor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<latefill_core::InvalidPeriod> for Error {
    fn from(e: latefill_core::InvalidPeriod) -> Self {
        Error::InvalidDate {
            value: e.value,
            expected: e.expected,
        }
    }
}

impl Error {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidDate { .. }
            | Error::InvalidPartitionName { .. }
            | Error::PeriodColumnType { .. }
            | Error::PeriodColumnValues { .. }
            | Error::ConfigRead { .. }
            | Error::ConfigInvalid { .. }
            | Error::InvalidLocation { .. } => ErrorClass::Usage,
            Error::SourceNotFound { .. }
            | Error::SourceVersionNotFound { .. }
            | Error::SourceVersionUnavailable { .. }
            | Error::NotPartitionedBy { .. }
            | Error::PartitionEmpty { .. }
            | Error::InvalidSql { .. }
            | Error::InvalidTransform { .. }
            | Error::MissingPartitionColumn { .. }
            | Error::SchemaMismatch { .. }
            | Error::DamagedLog { .. }
            | Error::AuditFailed { .. }
            | Error::AuditInvalid(_)
            | Error::Execution { .. }
            | Error::MemoryLimit { .. } => ErrorClass::Data,
            Error::TargetConflict { .. } => ErrorClass::Contention,
            Error::Store(e) if e.is_usage() => ErrorClass::Usage,
            Error::Delta { .. } | Error::Store(_) => ErrorClass::Storage,
            Error::Internal(_) => ErrorClass::Internal,
        }
    }
}

impl Error {
    /// This error as the memory limit `limit` explains it: an execution error whose
    /// cause is DataFusion's memory pool refusing memory (which reaches latefill as
    /// text when it comes through delta-rs's writer) is [`Error::MemoryLimit`].
    pub(crate) fn under_memory_limit(self, limit: Option<u64>) -> Self {
        let (Some(limit), Error::Execution { partition, source }) = (limit, &self) else {
            return self;
        };
        let text = source.to_string();
        let Some(at) = text.find("Resources exhausted") else {
            return self;
        };
        let detail: String = text[at..].chars().take(600).collect();
        Error::MemoryLimit {
            partition: partition.clone(),
            limit,
            detail: detail.trim_end().to_owned(),
        }
    }
}

/// `bytes` in the largest unit of 1024 that keeps a whole number before the point:
/// `256 MiB`, `1.5 GiB`, `900 B`.
pub fn display_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The sample rows of a failed audit, for its message: `; e.g. {...} {...}`.
fn samples_text(samples: &[serde_json::Value]) -> String {
    if samples.is_empty() {
        return String::new();
    }
    let rows: Vec<String> = samples.iter().map(|s| s.to_string()).collect();
    format!("; offending rows, e.g.: {}", rows.join(" "))
}
