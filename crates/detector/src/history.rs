//! A table's change history: every commit still in its log that changed data, with
//! when it was made and the partitions it changed. What a lateness report is made
//! of: when did each partition's data arrive?

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use url::Url;

use crate::detect::{RawKey, raw_key};
use crate::error::{Error, Result};
use crate::log::{LogReader, PartitionValues};
use crate::naming::{MetadataAction, PartitionNaming};
use latefill_core::storage::StorageOptions;
use latefill_core::{SourcePartition, TableVersion};

/// One commit that changed data (`add` or `remove` with `dataChange = true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitChanges {
    /// The commit's version.
    pub version: TableVersion,
    /// When it was made (`commitInfo.inCommitTimestamp`, else
    /// `commitInfo.timestamp`); `None` when the writer recorded neither.
    pub committed_at: Option<DateTime<Utc>>,
    /// The partitions whose data it changed, sorted.
    pub partitions: Vec<SourcePartition>,
}

/// What [`change_history`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    /// The table's latest version.
    pub table_version: TableVersion,
    /// The partition columns, logical names, in order.
    pub partition_columns: Vec<String>,
    /// The first version whose changes the history holds: 0 while the log holds
    /// every commit; after log cleanup, the version after the checkpoint it starts
    /// from (changes before it are not seen).
    pub read_from: TableVersion,
    /// The commits that changed data, in version order.
    pub commits: Vec<CommitChanges>,
    /// Partitions that already had data in the checkpoint the history starts from:
    /// the commits that first wrote them were cleaned up.
    pub existing_before: BTreeSet<SourcePartition>,
    /// Removes whose partition the log no longer says (their add was cleaned up and
    /// they carry no partition values): left out.
    pub unattributed_removes: usize,
}

impl History {
    /// The values of a partition this history named, column by column (`None` for
    /// null); `None` when the name is not of this table.
    pub fn values_of<'a>(&self, name: &'a str) -> Option<Vec<(&str, Option<&'a str>)>> {
        crate::naming::split_name(&self.partition_columns, name)
    }
}

/// Reads every commit still in the log of the table at `table` and returns those
/// that changed data, with their times and partitions. Its cost is one read per
/// commit the log holds (and the checkpoint it starts from, after cleanup): a report's
/// price, never a run's.
pub async fn change_history(table: &Url, options: &StorageOptions) -> Result<History> {
    let reader = LogReader::open(table, options)?;
    let listing = reader.list().await?;
    let latest = listing.latest().ok_or_else(|| Error::NoMetadata {
        table: table.clone(),
        version: 0,
    })?;
    let mut first = listing.contiguous_from();
    let mut metadata: Option<MetadataAction> = None;
    let mut paths: HashMap<String, PartitionValues> = HashMap::new();
    let mut existing: BTreeSet<RawKey> = BTreeSet::new();
    if first > 0 {
        let Some((&cp, parts)) = listing.checkpoints.range(first - 1..).next() else {
            return Err(Error::MissingCommit {
                table: table.clone(),
                version: first - 1,
                later: first,
            });
        };
        // The checkpoint holds the table as of `cp`: the history starts after it,
        // so that what it already holds is never taken for a later change.
        let checkpoint = reader.read_checkpoint(cp, parts).await?;
        first = cp + 1;
        metadata = checkpoint.metadata;
        existing = checkpoint.files.iter().map(|(_, v)| raw_key(v)).collect();
        paths = checkpoint.files.into_iter().collect();
    }
    let commits = if first <= latest {
        reader.read_commits(first..=latest).await?
    } else {
        Vec::new()
    };
    let mut raw: Vec<(u64, Option<i64>, BTreeSet<RawKey>)> = Vec::new();
    let mut unattributed_removes = 0;
    for (version, commit) in commits {
        if commit.metadata.is_some() {
            metadata = commit.metadata;
        }
        let mut changed = BTreeSet::new();
        for file in commit.files {
            let values = match (&file.partition_values, file.is_add) {
                (Some(v), _) => Some(v.clone()),
                (None, false) => paths.get(&file.path).cloned(),
                (None, true) => Some(PartitionValues::new()),
            };
            if file.is_add {
                if let Some(v) = &values {
                    paths.insert(file.path.clone(), v.clone());
                }
            } else {
                paths.remove(&file.path);
            }
            if !file.data_change {
                continue;
            }
            match values {
                Some(v) => {
                    changed.insert(raw_key(&v));
                }
                None => unattributed_removes += 1,
            }
        }
        if !changed.is_empty() {
            raw.push((version, commit.timestamp, changed));
        }
    }
    let metadata = metadata.ok_or_else(|| Error::NoMetadata {
        table: table.clone(),
        version: latest,
    })?;
    // The latest naming names every version, as detection does.
    let naming = PartitionNaming::from_metadata(&metadata);
    let mut names: BTreeMap<RawKey, Option<String>> = BTreeMap::new();
    let mut name = |key: &RawKey| -> Option<SourcePartition> {
        names
            .entry(key.clone())
            .or_insert_with(|| {
                let values: PartitionValues = key.iter().cloned().collect();
                naming.name(&values)
            })
            .clone()
            .map(SourcePartition::new)
    };
    let commits = raw
        .into_iter()
        .map(|(version, timestamp, keys)| {
            let partitions: BTreeSet<SourcePartition> = keys.iter().filter_map(&mut name).collect();
            CommitChanges {
                version: version.into(),
                committed_at: timestamp.and_then(DateTime::from_timestamp_millis),
                partitions: partitions.into_iter().collect(),
            }
        })
        .collect();
    let existing_before = existing.iter().filter_map(&mut name).collect();
    Ok(History {
        table_version: latest.into(),
        partition_columns: naming.column_names(),
        read_from: first.into(),
        commits,
        existing_before,
        unattributed_removes,
    })
}
