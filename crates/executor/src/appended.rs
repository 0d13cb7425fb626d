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

use latefill_core::{PartitionDate, TableVersion};

use crate::error::{Error, Result};
use crate::fingerprint::file_identity;
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
    let (url, options) = (&pipeline.source, &pipeline.source_storage);
    let partitioning = &pipeline.partitioning;
    let latest = open_source(session, url, options, None).await?;
    let at = TableVersion::from(latest.version().unwrap_or_default());
    // The old version on a session of its own: the session's kept table stays at the
    // latest version.
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
    let files_now = partition_files(&latest, url, partitioning, date).await?;
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
    let added: Vec<_> = files_now
        .into_iter()
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
    Ok(SinceVersion::Appended(Appended {
        at,
        rows: rows_from_stats(&added),
        bytes: added.iter().map(|f| f.size().max(0) as u64).sum(),
        files,
    }))
}
