//! How a run brings a partition up to date: by recomputing it from all its rows
//! (replace), or from the rows appended since it was processed (incremental), and why.
//!
//! ```text
//!                      strategy = "replace" ──────────────────────────► replace
//!  processed at V  ─►  transform combinable? ─► same transform at V? ─► target's txn = V?
//!  (state table)       (combine.rs, the plan)   (state table)            (target's log)
//!                   ─► only files added since V? ─► fewer bytes than a replace? ─► incremental
//!                      (appended.rs, the source's log)
//! ```
//!
//! The first check that fails names the reason the run replaces the partition. The
//! checks read no data file: the plan, the state table's record, and the two logs.

use std::str::FromStr;

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::LogicalFileView;
use latefill_core::{PartitionDate, PartitionKey, TableVersion};
use serde::Serialize;

use crate::appended::{Appended, SinceVersion, appended_between};
use crate::combine::{Combinable, transform_combinable};
use crate::error::Result;
use crate::pipeline::Pipeline;
use crate::source::rows_from_stats;
use crate::target::txn_of;

/// Which strategies a pipeline allows: `transform.strategy` in a pipeline file,
/// `--strategy` on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Update a partition from its late rows where that is safe and reads less than
    /// a replace; replace it otherwise (the default).
    #[default]
    Auto,
    /// Always recompute a partition from all its rows.
    Replace,
    /// Update a partition from its late rows wherever that is safe, even when it
    /// reads more than a replace would; replace it otherwise.
    Incremental,
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Strategy::Auto),
            "replace" => Ok(Strategy::Replace),
            "incremental" => Ok(Strategy::Incremental),
            other => Err(format!(
                "unknown strategy {other:?}: use \"auto\" (update from late rows where safe \
                 and cheaper), \"replace\" (always recompute the partition) or \
                 \"incremental\" (update from late rows wherever safe)"
            )),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Auto => "auto",
            Strategy::Replace => "replace",
            Strategy::Incremental => "incremental",
        })
    }
}

/// What the state table records of a partition's last processing: an incremental
/// update starts from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The source version the partition was processed at.
    pub source_version: TableVersion,
    /// The transform's version that processed it, when known.
    pub transform: Option<String>,
    /// The fingerprint of the source files it was processed from
    /// ([`fingerprint`](crate::fingerprint())), when known. The files of the
    /// source at `source_version` must have it: a source replaced by another table
    /// has a version of that number too, with other files.
    pub fingerprint: Option<String>,
}

/// How a partition run brought (or will bring) the partition up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Recomputed from all the partition's rows.
    Replace,
    /// Updated from the rows appended since it was processed, combined with the
    /// target's rows of the partition.
    Incremental,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Replace => "replace",
            Method::Incremental => "incremental",
        })
    }
}

/// What a strategy reads, from the logs' file statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reads {
    /// Data files.
    pub files: usize,
    /// Rows, when every file's statistics count them.
    pub rows: Option<u64>,
    /// Bytes.
    pub bytes: u64,
}

impl Reads {
    pub(crate) fn of(files: &[LogicalFileView]) -> Self {
        Reads {
            files: files.len(),
            rows: rows_from_stats(files),
            bytes: files.iter().map(|f| f.size().max(0) as u64).sum(),
        }
    }

    fn plus(self, other: Reads) -> Reads {
        Reads {
            files: self.files + other.files,
            rows: self.rows.zip(other.rows).map(|(a, b)| a + b),
            bytes: self.bytes + other.bytes,
        }
    }
}

/// The strategy chosen for a partition, why, and what each would read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// The strategy that runs.
    pub strategy: Method,
    /// Why the other was not chosen, e.g. "avg is not combinable".
    pub reason: String,
    /// What a replace reads: the source partition's files.
    pub replace: Reads,
    /// What an incremental update reads: the files appended to the source partition
    /// and the target's files of the partition; `None` when it is not possible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Reads>,
    /// The appended files and how to combine, when the update is incremental.
    #[serde(skip)]
    pub(crate) update: Option<(Appended, Combinable)>,
}

/// What [`choose`] decides from.
pub(crate) struct Candidate<'a> {
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) strategy: Strategy,
    pub(crate) processed: Option<&'a Processed>,
    pub(crate) date: PartitionDate,
    pub(crate) partition: &'a PartitionKey,
    /// The source at the version the run reads, and the partition's files there.
    pub(crate) source: &'a DeltaTable,
    pub(crate) files: &'a [LogicalFileView],
    /// The target as the run will replace the partition in it.
    pub(crate) target: Option<&'a DeltaTable>,
    pub(crate) target_files: &'a [LogicalFileView],
    /// The schema of the table `source` the transform reads.
    pub(crate) source_schema: SchemaRef,
}

/// Chooses how to bring `candidate`'s partition up to date (see the module's
/// diagram); errors are those of reading the logs.
pub(crate) async fn choose(candidate: Candidate<'_>) -> Result<Choice> {
    let replace = Reads::of(candidate.files);
    let replacing = |reason: String, incremental: Option<Reads>| Choice {
        strategy: Method::Replace,
        reason,
        replace,
        incremental,
        update: None,
    };
    let pipeline = candidate.pipeline;
    if candidate.strategy == Strategy::Replace {
        return Ok(replacing(
            "replace was asked for (--strategy replace, or transform.strategy)".into(),
            None,
        ));
    }
    let Some(processed) = candidate.processed else {
        return Ok(replacing(
            "the partition has not been processed before".into(),
            None,
        ));
    };
    let how = match transform_combinable(pipeline, candidate.source_schema).await? {
        Ok(how) => how,
        Err(why) => return Ok(replacing(why.to_string(), None)),
    };
    let transform = pipeline.transform_version();
    if processed.transform.as_deref() != Some(transform.as_str()) {
        return Ok(replacing(
            "the transform changed since the partition was processed".into(),
            None,
        ));
    }
    let Some(target) = candidate.target else {
        return Ok(replacing("the target does not exist".into(), None));
    };
    let txn = txn_of(target, pipeline, candidate.partition).await?;
    if txn != Some(processed.source_version) {
        return Ok(replacing(
            match txn {
                Some(txn) => format!(
                    "the target's partition reflects source version {txn}, not {} as recorded",
                    processed.source_version
                ),
                None => "the target has no commit of this partition".into(),
            },
            None,
        ));
    }
    let Some(fingerprint) = processed.fingerprint.as_deref() else {
        return Ok(replacing(
            "the state table has no fingerprint of the files the partition was processed from"
                .into(),
            None,
        ));
    };
    let appended = match appended_between(
        pipeline,
        candidate.date,
        processed.source_version,
        Some(fingerprint),
        candidate.source,
        candidate.files,
    )
    .await?
    {
        SinceVersion::Appended(appended) => appended,
        SinceVersion::Changed(why) => return Ok(replacing(why, None)),
    };
    if appended.files.is_empty() {
        // Asked to run a partition whose rows did not change (`backfill --all`): a
        // recomputation is what is wanted.
        return Ok(replacing(
            format!(
                "nothing was appended since version {}: asked to run anyway, it is recomputed",
                processed.source_version
            ),
            None,
        ));
    }
    let incremental = Reads {
        files: appended.files.len(),
        rows: appended.rows,
        bytes: appended.bytes,
    }
    .plus(Reads::of(candidate.target_files));
    if candidate.strategy == Strategy::Auto && incremental.bytes >= replace.bytes {
        return Ok(replacing(
            format!(
                "an update would read {} bytes, a replace {}",
                incremental.bytes, replace.bytes
            ),
            Some(incremental),
        ));
    }
    Ok(Choice {
        strategy: Method::Incremental,
        reason: format!(
            "only files were added since version {}, and the transform's result combines",
            processed.source_version
        ),
        replace,
        incremental: Some(incremental),
        update: Some((appended, how)),
    })
}

/// The strategy a run of the partition of `date` would use now, and why, without
/// running it: the source at its latest version, the target as it is, and
/// `processed`, the state table's record of the partition. Reads the logs only.
pub async fn choose_strategy(
    session: &crate::Session,
    pipeline: &Pipeline,
    date: PartitionDate,
    processed: Option<&Processed>,
) -> Result<Choice> {
    use crate::source::{open_source, partition_files, raw_values, register_source};
    let partitioning = &pipeline.partitioning;
    let source = open_source(session, &pipeline.source, &pipeline.source_storage, None).await?;
    let files = partition_files(&source, &pipeline.source, partitioning, date).await?;
    let target = crate::target::open_target(session, pipeline).await?;
    let target_files =
        partition_files(target.as_ref(), &pipeline.target, partitioning, date).await?;
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    let values = raw_values(&files, partitioning);
    register_source(&ctx, &source, &pipeline.source, &values, None).await?;
    choose(Candidate {
        pipeline,
        strategy: pipeline.strategy,
        processed,
        date,
        partition: &partitioning.key(date),
        source: &source,
        files: &files,
        target: target.as_ref(),
        target_files: &target_files,
        source_schema: crate::source::registered_schema(&ctx).await?,
    })
    .await
}
