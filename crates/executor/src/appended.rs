//! Whether a partition's source data only grew since the version it was processed
//! at: the second condition of the incremental strategy (issue 25), next to
//! [`combinable`](crate::combine::combinable).
//!
//! The partition's files at that version and now are compared by their identities
//! ([`file_identity`]: path and deletion vector). Only appends leave every file of
//! then in place, unchanged, and add files without deletion vectors; a DELETE, an
//! UPDATE, a MERGE, a deletion vector, or a compaction (which changes no rows but
//! rewrites files) does not, and the partition is then replaced as it is today.

use std::collections::HashSet;

use deltalake::DeltaTable;
use deltalake::kernel::LogicalFileView;
use latefill_core::{PartitionDate, TableVersion};

use crate::error::{Error, Result};
use crate::fingerprint::{file_identity, files_fingerprint};
use crate::pipeline::Pipeline;
use crate::session::Session;
use crate::source::{open_source, partition_files, rows_from_stats};

/// What happened to a partition's source files since a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinceVersion {
    /// Only files were added: these.
    Appended(Appended),
    /// Something else changed them; why, in words for the plan.
    Changed(String),
}

/// The files appended to a partition between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The source version compared with (the latest).
    pub at: TableVersion,
    /// The added files' paths, relative to the table, sorted.
    pub files: Vec<String>,
    /// Their rows, when the log's statistics count them.
    pub rows: Option<u64>,
    /// Their size in bytes.
    pub bytes: u64,
}

/// Whether the source's partition of `date` only gained files between `version`
/// and the latest version ([`SinceVersion`]). An old version that the log can no
/// longer load (log cleanup), or that lies beyond the latest (a replaced source), is
/// [`SinceVersion::Changed`]: only a replace can be trusted then.
pub async fn appended_since(
    session: &Session,
    pipeline: &Pipeline,
    date: PartitionDate,
    version: TableVersion,
) -> Result<SinceVersion> {
    let latest = open_source(session, &pipeline.source, &pipeline.source_storage, None).await?;
    let files = partition_files(&latest, &pipeline.source, &pipeline.partitioning, date).await?;
    appended_between(pipeline, date, version, None, &latest, &files).await
}

/// [`appended_since`] up to the source `now`, whose files of the partition are
/// `files_now`, from a `version` whose files of the partition had `fingerprint`
/// (when given): other files there mean another table than the one processed.
pub(crate) async fn appended_between(
    pipeline: &Pipeline,
    date: PartitionDate,
    version: TableVersion,
    fingerprint: Option<&str>,
    now: &DeltaTable,
    files_now: &[LogicalFileView],
) -> Result<SinceVersion> {
    let (url, options) = (&pipeline.source, &pipeline.source_storage);
    let partitioning = &pipeline.partitioning;
    let at = TableVersion::from(now.version().unwrap_or_default());
    if version > at {
        return Ok(SinceVersion::Changed(format!(
            "the partition was processed at source version {version}, after the version {at} \
             read now (an older version pinned, or a replaced table)"
        )));
    }
    // The old version on a session of its own: the session's kept table stays at the
    // version read now.
    let then = match open_source(&Session::new(), url, options, Some(version)).await {
        Ok(then) => then,
        Err(Error::SourceVersionNotFound { .. } | Error::SourceVersionUnavailable { .. }) => {
            return Ok(SinceVersion::Changed(format!(
                "the source's version {version} can no longer be read (log cleanup, or a \
                 replaced table): its files cannot be compared"
            )));
        }
        Err(e) => return Err(e),
    };
    let files_then = partition_files(&then, url, partitioning, date).await?;
    if let Some(expected) = fingerprint
        && files_fingerprint(&files_then) != expected
    {
        return Ok(SinceVersion::Changed(format!(
            "the source's files at version {version} are not those the partition was \
             processed from (the table was replaced, or the state table rebuilt)"
        )));
    }
    let now: HashSet<String> = files_now.iter().map(file_identity).collect();
    let partition = pipeline.partition_name(date);
    let mut then_ids = HashSet::with_capacity(files_then.len());
    for file in &files_then {
        let id = file_identity(file);
        if !now.contains(&id) {
            return Ok(SinceVersion::Changed(format!(
                "the file {} of {partition} at version {version} was removed or given a \
                 deletion vector by version {at} (a delete, an update or a compaction)",
                file.path()
            )));
        }
        then_ids.insert(id);
    }
    let added: Vec<&LogicalFileView> = files_now
        .iter()
        .filter(|f| !then_ids.contains(&file_identity(f)))
        .collect();
    if let Some(with_dv) = added
        .iter()
        .find(|f| f.deletion_vector_descriptor().is_some())
    {
        return Ok(SinceVersion::Changed(format!(
            "the file {} added to {partition} since version {version} has a deletion vector",
            with_dv.path()
        )));
    }
    let mut files: Vec<String> = added.iter().map(|f| f.path().into_owned()).collect();
    files.sort();
    let added: Vec<LogicalFileView> = added.into_iter().cloned().collect();
    Ok(SinceVersion::Appended(Appended {
        at,
        rows: rows_from_stats(&added),
        bytes: added.iter().map(|f| f.size().max(0) as u64).sum(),
        files,
    }))
}
