//! Detection: the source's changes since the cursor, by pipeline partition, and the
//! plan of what is late or stale before a date; the cursor kept in the state table.

use std::collections::BTreeMap;

use latefill_core::{PartitionDate, PartitionKey, TableVersion, UnrecognisedPartition};
use latefill_detector::{Changes, Cursor, detect_changes};
use latefill_executor::{Pipeline, partition_fingerprints};
use latefill_state::{PartitionState, Status};
use serde::Serialize;

use super::{Engine, Error, Result};
use crate::plan::{Change, LatePartition, PlanInput, plan_late, plan_stale};

/// How the last detection read the source's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectionSummary {
    /// The source version detection reached.
    pub table_version: TableVersion,
    /// `cursor` (only new commits), `since` or `full`.
    pub mode: &'static str,
    /// Commit files read.
    pub commits_read: usize,
    /// `false` when log cleanup hid commits; see `inexact_reason`.
    pub exact: bool,
    /// Why the answer is not exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inexact_reason: Option<String>,
    /// Set when the source was dropped and re-created or replaced since the last
    /// detection: why that was concluded. Its partitions are then judged by their
    /// files, since versions of the old table mean nothing in the new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_replaced: Option<String>,
    /// Source partitions that name no partition of the pipeline (a partition value
    /// that is not a date, a null): never planned, and said so rather than skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unrecognised: Vec<UnrecognisedPartition>,
}

/// The detector's changes per partition of the pipeline, by name. A source may be
/// partitioned by more columns than the pipeline's (`event_time`, `region`): a
/// date's change is then the latest of its sub-partitions', exact when that latest
/// one is. Source partitions that name no date are returned apart.
fn by_pipeline_partition(
    pipeline: &Pipeline,
    changes: &Changes,
) -> (BTreeMap<PartitionKey, Change>, Vec<UnrecognisedPartition>) {
    let mut grouped: BTreeMap<PartitionKey, Change> = BTreeMap::new();
    let mut unrecognised = Vec::new();
    for change in &changes.partitions {
        let key = match changes.values_of(change.partition.as_str()) {
            Some(values) => pipeline.partitioning.key_of(&change.partition, values),
            None => Err(UnrecognisedPartition {
                partition: change.partition.clone(),
                reason: format!(
                    "does not follow the source's partition columns {:?}",
                    changes.partition_columns
                ),
            }),
        };
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                unrecognised.push(e);
                continue;
            }
        };
        grouped
            .entry(key.clone())
            .and_modify(|g| {
                if change.last_change_version > g.last_change_version {
                    g.last_change_version = change.last_change_version;
                    g.exact = change.exact;
                } else if change.last_change_version == g.last_change_version {
                    g.exact |= change.exact;
                }
            })
            .or_insert_with(|| Change {
                partition: key,
                last_change_version: change.last_change_version,
                exact: change.exact,
            });
    }
    (grouped, unrecognised)
}

/// What the state row `row` records of the partition's last processing, for an
/// incremental update; `None` when it records no source version.
pub(crate) fn processed_of(row: &PartitionState) -> Option<latefill_executor::Processed> {
    Some(latefill_executor::Processed {
        source_version: row.source_version?,
        transform: row.transform.clone(),
        fingerprint: row.fingerprint.clone(),
    })
}

/// A detection and its plan.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// How the log was read.
    pub detection: DetectionSummary,
    /// The late partitions before the date, sorted.
    pub late: Vec<LatePartition>,
    /// The partitions before the date processed by another version of the transform
    /// (the SQL changed since), sorted. Reprocessed only on request
    /// (`backfill --stale`).
    pub stale: Vec<PartitionKey>,
    #[serde(skip)]
    pub(super) changes: Vec<Change>,
    /// The state rows the plan was made from.
    #[serde(skip)]
    pub(crate) state: BTreeMap<PartitionKey, PartitionState>,
}

impl Detection {
    /// Every partition of the pipeline whose source data changed, with its last
    /// change.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }
}

impl Engine {
    /// Reads the source's changes, continuing from the cursor in the state table;
    /// with `persist`, saves the new one ([`Engine::persist_changes`]).
    async fn changes(&self, persist: bool) -> Result<Changes> {
        let (changes, cursor) = self.read_changes(None).await?;
        if persist {
            self.persist_changes(&changes, cursor.as_ref(), None)
                .await?;
        }
        Ok(changes)
    }

    /// Reads the source's changes from the cursor in the state table, committing
    /// nothing; returns them with the cursor they continued from.
    ///
    /// With `current_since`, the source as this process loaded it at that moment or
    /// after bounds the commits read ([`latefill_detector::DetectChanges::with_latest_known`]).
    pub(super) async fn read_changes(
        &self,
        current_since: Option<std::time::Instant>,
    ) -> Result<(Changes, Option<Cursor>)> {
        let snapshot = self.state.read().await?;
        let latest = match current_since {
            Some(since) => self
                .session
                .tables()
                .current_or_awaited(&self.pipeline.source, &self.pipeline.source_storage, since)
                .await
                .and_then(|table| table.version()),
            None => None,
        };
        let cursor: Option<Cursor> =
            snapshot
                .cursor
                .as_deref()
                .and_then(|c| match serde_json::from_str(c) {
                    Ok(cursor) => Some(cursor),
                    Err(e) => {
                        tracing::warn!(error = %e, "the stored detector cursor is unreadable; reading the whole log");
                        None
                    }
                });
        let changes = detect_changes(&self.pipeline.source)
            .with_storage_options(self.pipeline.source_storage.clone())
            .with_cursor(cursor.clone())
            .with_latest_known(latest.map(TableVersion::new))
            .with_partition_column(self.pipeline.partitioning.column())
            .await
            .map_err(|e| self.source_error(e))?;
        if changes.replaced.is_some() {
            // What this process keeps of the old table must not be advanced.
            self.session.tables().forget(&self.pipeline.source);
        }
        Ok((changes, cursor))
    }

    /// A detector error about the source, said as the executor says it about the
    /// source: a missing table or a damaged log names the source's role.
    pub(super) fn source_error(&self, e: latefill_detector::Error) -> Error {
        use latefill_detector::Error as Log;
        let table = self.pipeline.source.clone();
        match e {
            Log::NotATable { reason, .. } => {
                latefill_executor::Error::SourceNotFound { table, reason }.into()
            }
            damage if damage.is_log_damage() => latefill_executor::Error::DamagedLog {
                role: "source",
                table,
                source: damage,
            }
            .into(),
            other => other.into(),
        }
    }

    /// The cursor `changes` moved to, as the state table stores it, when it differs
    /// from `from`.
    pub(super) fn moved_cursor(changes: &Changes, from: Option<&Cursor>) -> Option<String> {
        changes
            .cursor()
            .filter(|new| new.moved_from(from))
            .map(|new| serde_json::to_string(new).expect("a cursor serialises"))
    }

    /// Records what a detection learnt: when the source was replaced, forgets the
    /// state's source versions before the cursor moves on to the new table (so that a
    /// crash in between finds the replacement again); then saves the cursor, unless
    /// `saved` is the cursor a completion already saved with it.
    pub(super) async fn persist_changes(
        &self,
        changes: &Changes,
        from: Option<&Cursor>,
        saved: Option<&str>,
    ) -> Result<()> {
        if changes.replaced.is_some() {
            self.state.forget_source_versions().await?;
        }
        if let Some(json) = Self::moved_cursor(changes, from)
            && saved != Some(json.as_str())
        {
            self.state.save_cursor(json).await?;
        }
        Ok(())
    }

    /// The late partitions before `before` (every one for `None`), committing
    /// nothing.
    pub(crate) async fn detect_read_only(
        &self,
        before: Option<PartitionDate>,
        lookback_days: Option<u32>,
    ) -> Result<Detection> {
        latefill_executor::check_locations(&self.pipeline)?;
        self.detect_with(before, lookback_days, false).await
    }

    /// Sets each late partition's [`LatePartition::strategy`]: how a run would bring
    /// it up to date now, from `state`'s record of it.
    pub(crate) async fn choose_strategies(
        &self,
        late: &mut [LatePartition],
        state: &BTreeMap<PartitionKey, PartitionState>,
    ) -> Result<()> {
        for partition in late {
            let processed = state.get(&partition.partition).and_then(processed_of);
            let choice = latefill_executor::choose_strategy(
                &self.session,
                &self.pipeline,
                partition.partition.date(),
                processed.as_ref(),
            )
            .await?;
            partition.strategy = Some(choice);
        }
        Ok(())
    }

    /// [`Engine::detect`]; with `persist`, also saves the cursor (and forgets the
    /// source versions of a replaced source) in the state table, as a run does.
    pub(crate) async fn detect_with(
        &self,
        before: Option<PartitionDate>,
        lookback_days: Option<u32>,
        persist: bool,
    ) -> Result<Detection> {
        let changes = self.changes(persist).await?;
        self.plan(before, lookback_days, changes, persist).await
    }

    /// [`Engine::detect_with`], with the changes read while `check` runs: the plan is
    /// made only once `check` passed. The source as loaded at `current_since` or after
    /// bounds the commits read ([`Engine::read_changes`]). Returns the plan and the
    /// cursor the detection moved to, for the caller to save (with its first claim):
    /// only a replaced source's is saved here, after its versions are forgotten.
    pub(crate) async fn detect_checked(
        &self,
        before: Option<PartitionDate>,
        lookback_days: Option<u32>,
        check: impl std::future::Future<Output = Result<()>>,
        current_since: std::time::Instant,
    ) -> Result<(Detection, Option<String>)> {
        let (checked, read) = tokio::join!(check, self.read_changes(Some(current_since)));
        checked?;
        let (changes, cursor) = read?;
        let unsaved = match changes.replaced {
            Some(_) => {
                self.persist_changes(&changes, cursor.as_ref(), None)
                    .await?;
                None
            }
            None => Self::moved_cursor(&changes, cursor.as_ref()),
        };
        let detection = self.plan(before, lookback_days, changes, true).await?;
        Ok((detection, unsaved))
    }

    /// Plans the late and stale partitions before `before` (all of them for `None`)
    /// from `changes` and the state; `persisted` says whether a replaced source's
    /// versions were forgotten in the state table already (else they are, in memory).
    pub(super) async fn plan(
        &self,
        before: Option<PartitionDate>,
        lookback_days: Option<u32>,
        changes: Changes,
        persisted: bool,
    ) -> Result<Detection> {
        // Planned claims check the rows they were planned from: a plan on the state
        // this process read or wrote moments ago is safe, and saves a listing and a read.
        let mut state = self.state.read_recent().await?;
        if changes.replaced.is_some() && !persisted {
            // What forget_source_versions would record, in memory only.
            for row in state.partitions.values_mut() {
                row.source_version = None;
            }
        }
        let (mut grouped, unrecognised) = by_pipeline_partition(&self.pipeline, &changes);
        // A processed partition with no source version was processed against a source
        // that was since replaced; if the new table has no such partition, its data is
        // gone, which is a change too.
        for (key, row) in &state.partitions {
            if row.status == Status::Processed && row.source_version.is_none() {
                grouped.entry(key.clone()).or_insert_with(|| Change {
                    partition: key.clone(),
                    last_change_version: changes.table_version,
                    exact: false,
                });
            }
        }
        let partitions: Vec<Change> = grouped.into_values().collect();
        self.remember_changes(&partitions, &changes);
        // Only the files can decide a change whose version is not exact, or a row
        // without a version; listing them is the costly part, so only when needed.
        let undecided = partitions.iter().any(|c| {
            state.partitions.get(&c.partition).is_some_and(|row| {
                crate::plan::can_be_late(row)
                    && match row.source_version {
                        None => true,
                        Some(v) => !c.exact && v < c.last_change_version,
                    }
            })
        });
        let fingerprints = if undecided {
            Some(partition_fingerprints(&self.session, &self.pipeline).await?)
        } else {
            None
        };
        let input = PlanInput {
            partitioning: &self.pipeline.partitioning,
            before,
            lookback_days,
            now: self.state.now(),
            fingerprints: fingerprints.as_ref(),
        };
        let late = plan_late(&state.partitions, &partitions, &input);
        let stale = plan_stale(
            &state.partitions,
            &self.pipeline.transform_version(),
            &input,
        );
        Ok(Detection {
            detection: DetectionSummary {
                table_version: changes.table_version,
                mode: changes.scan.mode,
                commits_read: changes.scan.commits_read,
                exact: changes.exact,
                inexact_reason: changes.inexact_reason.clone(),
                source_replaced: changes.replaced.as_ref().map(|r| r.reason.clone()),
                unrecognised,
            },
            late,
            stale,
            changes: partitions,
            state: state.partitions,
        })
    }
}
