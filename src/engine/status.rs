//! [`Engine::status`]: the state table beside what the source's log says, a row a
//! partition.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use latefill_core::{PartitionKey, TableVersion};
use latefill_state::Status;
use serde::Serialize;

use super::{Engine, Result};
use crate::plan::is_stale;

/// One row of [`Engine::status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusRow {
    /// The pipeline.
    pub pipeline: String,
    /// The partition.
    pub partition: PartitionKey,
    /// The partition's period alone (`2024-01-03`), as `--date` takes it.
    pub period: String,
    /// `processing`, `processed`, `failed`, or `unprocessed` (seen in the source only).
    pub status: String,
    /// The source version it was last processed at.
    pub source_version: Option<TableVersion>,
    /// The last version its data changed at.
    pub last_change_version: Option<TableVersion>,
    /// Whether it is late: processed, and changed since.
    pub late: bool,
    /// Whether it is stale: processed by another version of the transform.
    pub stale: bool,
    /// The version of the transform that processed it.
    pub transform: Option<String>,
    /// Who holds or last held it.
    pub owner: Option<String>,
    /// Until when a `processing` row is leased.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Claims so far.
    pub attempts: u64,
    /// Why the last run failed.
    pub last_error: Option<String>,
    /// When the state row last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// What the last completed run recorded: `started_at`, `duration_ms`,
    /// `strategy`, `rows_read`, `bytes_read`, `rows_written`, `target_version`, and
    /// `audit_warnings` (audits of severity `warn` that failed, with their samples).
    pub last_run: Option<serde_json::Value>,
}

impl StatusRow {
    /// The names of the audits that warned on the last run.
    pub fn audit_warnings(&self) -> Vec<String> {
        self.last_run
            .as_ref()
            .and_then(|run| run["audit_warnings"].as_array())
            .map(|warnings| {
                warnings
                    .iter()
                    .filter_map(|w| w["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Engine {
    /// Every partition of the state table and of the source, with its status, its last
    /// change and whether it is late.
    pub async fn status(&self) -> Result<Vec<StatusRow>> {
        let detection = self.detect_read_only(None, None).await?;
        let state = self.state.read().await?;
        let transform = self.pipeline.transform_version();
        let late: BTreeSet<&PartitionKey> = detection.late.iter().map(|l| &l.partition).collect();
        let changes: BTreeMap<&PartitionKey, TableVersion> = detection
            .changes
            .iter()
            .map(|c| (&c.partition, c.last_change_version))
            .collect();
        let mut keys: BTreeSet<&PartitionKey> = state.partitions.keys().collect();
        keys.extend(changes.keys());
        for name in &state.unrecognised {
            // Written under another partitioning of the pipeline (its column,
            // granularity or format changed since): nothing plans it any more.
            tracing::warn!(partition = name, pipeline = %self.pipeline.name, "state row of no partition of this pipeline: left out of the status");
        }
        Ok(keys
            .into_iter()
            .map(|key| {
                let row = state.partitions.get(key);
                StatusRow {
                    pipeline: self.pipeline.name.clone(),
                    period: key.date().to_string(),
                    status: row.map_or("unprocessed".into(), |r| r.status.to_string()),
                    source_version: row.and_then(|r| r.source_version),
                    last_change_version: changes.get(key).copied(),
                    late: late.contains(key),
                    stale: row.is_some_and(|r| is_stale(r, &transform)),
                    transform: row.and_then(|r| r.transform.clone()),
                    owner: row.map(|r| r.owner.clone()),
                    lease_expires_at: row
                        .filter(|r| r.status == Status::Processing)
                        .and_then(|r| r.lease_expires_at),
                    attempts: row.map_or(0, |r| r.attempts),
                    last_error: row.and_then(|r| r.last_error.clone()),
                    updated_at: row.map(|r| r.updated_at),
                    last_run: row
                        .and_then(|r| r.detail.as_deref())
                        .and_then(|d| serde_json::from_str(d).ok()),
                    partition: key.clone(),
                }
            })
            .collect())
    }
}
