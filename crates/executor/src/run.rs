//! Processing one partition: read it at a pinned source version, transform it with
//! DataFusion, and replace it in the target in one Delta commit.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::common::Column;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::logical_expr::{Expr, cast, lit};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{LogicalFileView, Transaction};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use serde::Serialize;
use url::Url;

use crate::error::{Error, Result};
use crate::session::Session;
use crate::transform::Transform;
use latefill_core::storage::{StorageOptions, is_local_without_log, table_builder};

use crate::pipeline::Pipeline;
use latefill_core::partition::{PartitionDate, Partitioning};

/// What one partition run did. Serialises to the `--output json` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunReport {
    /// The partition, e.g. `event_time=2024-01-03`.
    pub partition: String,
    /// The partition's period alone (`2024-01-03`), as `--date` takes it.
    #[serde(default)]
    pub period: String,
    /// The source version the partition was read at.
    pub source_version: u64,
    /// Data files of the partition that were read.
    pub files_read: usize,
    /// Source rows in the partition at that version.
    pub rows_read: u64,
    /// Rows written to the target partition.
    pub rows_written: u64,
    /// The target's version after the commit that replaced the partition.
    pub target_version: u64,
    /// Fingerprint of the partition's source files at `source_version`
    /// ([`fingerprint`]); equal fingerprints mean the same data.
    pub fingerprint: String,
    /// The transform's version ([`Pipeline::transform_version`]) that wrote it.
    pub transform: String,
    /// `true` when nothing was written because the target's `txn` showed that a run
    /// which died after its commit had already written this version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    /// When the run started reading the source.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When the target commit had landed.
    pub finished_at: chrono::DateTime<chrono::Utc>,
    /// Wall time of the whole run.
    pub duration_ms: u64,
}

/// A partition of the source at a pinned version, from the log alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The pinned source version.
    pub source_version: u64,
    /// Its data files.
    pub files: usize,
    /// Its rows, when the log has row counts.
    pub rows: Option<u64>,
    /// [`fingerprint`] of its files.
    pub fingerprint: String,
}

/// Reads what the source holds for `date` at `version` (or the latest), without
/// reading data.
pub async fn inspect_partition(
    session: &Session,
    pipeline: &Pipeline,
    date: PartitionDate,
    version: Option<u64>,
) -> Result<PartitionInfo> {
    let source = open_source(session, &pipeline.source, &pipeline.source_storage, version).await?;
    let partitioning = &pipeline.partitioning;
    check_partitioned_by(&source, &pipeline.source, partitioning)?;
    let files = partition_files(&source, &pipeline.source, partitioning, date).await?;
    if version.is_some() {
        check_files_exist(session, &source, pipeline, date, &files).await?;
    }
    Ok(PartitionInfo {
        source_version: source.version().unwrap_or_default(),
        files: files.len(),
        rows: rows_from_stats(&files),
        fingerprint: files_fingerprint(&files),
    })
}

/// The target's latest version and the source version its log records for
/// `partition` (its `txn`); `None` when the target does not exist.
pub async fn target_txn_version(
    session: &Session,
    pipeline: &Pipeline,
    partition: &str,
) -> Result<Option<(u64, Option<u64>)>> {
    let Some(target) = open_target(session, pipeline).await? else {
        return Ok(None);
    };
    let delta = |source| Error::Delta {
        action: "reading the txn of target",
        table: pipeline.target.clone(),
        source,
    };
    let version = target
        .snapshot()
        .map_err(delta)?
        .transaction_version(target.log_store().as_ref(), pipeline.app_id(partition))
        .await
        .map_err(delta)?;
    Ok(Some((
        target.version().unwrap_or_default(),
        version.and_then(|v| u64::try_from(v).ok()),
    )))
}

/// A fingerprint of a set of data files: FNV-1a over their sorted identities (see
/// [`file_identity`]) and the count. Delta never rewrites a data file in place, so a
/// partition whose file set is unchanged holds the same rows.
pub fn fingerprint<'a>(paths: impl IntoIterator<Item = &'a str>) -> String {
    let mut paths: Vec<&str> = paths.into_iter().collect();
    paths.sort_unstable();
    let hash = fnv1a(
        paths
            .iter()
            .flat_map(|p| p.bytes().chain(std::iter::once(b'\n'))),
    );
    format!("{}:{hash:016x}", paths.len())
}

/// FNV-1a, 64 bits: a stable hash for identities (not for security).
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What identifies a live file's rows: its path, and its deletion vector if it has
/// one. A DELETE under deletion vectors keeps the path and adds a vector, so a
/// fingerprint of paths alone would not see it.
pub fn file_identity(file: &LogicalFileView) -> String {
    let path = file.path();
    match file.deletion_vector_descriptor() {
        Some(dv) => format!(
            "{path}#dv={:?}:{}@{}:{}",
            dv.storage_type,
            dv.path_or_inline_dv,
            dv.offset.unwrap_or_default(),
            dv.cardinality
        ),
        None => path.into_owned(),
    }
}

fn files_fingerprint(files: &[LogicalFileView]) -> String {
    let ids: Vec<String> = files.iter().map(file_identity).collect();
    fingerprint(ids.iter().map(String::as_str))
}

/// The fingerprint of every partition of the pipeline in its source at the latest
/// version, by partition name (`column=<period>`); files whose value names no period
/// of the pipeline's granularity are left out.
pub async fn partition_fingerprints(
    session: &Session,
    pipeline: &Pipeline,
) -> Result<BTreeMap<String, String>> {
    let source = &pipeline.source;
    let table = open_source(session, source, &pipeline.source_storage, None).await?;
    let files: Vec<LogicalFileView> =
        latefill_core::storage::active_files(&table)
            .await
            .map_err(|e| Error::Delta {
                action: "listing files of source",
                table: source.clone(),
                source: e,
            })?;
    let mut identities: BTreeMap<String, Vec<String>> = Default::default();
    for file in &files {
        if let Some(period) = period_of_file(&pipeline.partitioning, file) {
            identities
                .entry(pipeline.partition_name(period))
                .or_default()
                .push(file_identity(file));
        }
    }
    Ok(identities
        .into_iter()
        .map(|(k, v)| (k, fingerprint(v.iter().map(String::as_str))))
        .collect())
}

/// Processes one partition of a pipeline; build it with [`run_partition`] and await it.
///
/// ```no_run
/// # async fn example() -> latefill_executor::Result<()> {
/// use latefill_core::PartitionDate;
/// use latefill_executor::{Pipeline, run_partition};
///
/// let pipeline = Pipeline::from_file("latefill.toml")?;
/// let report = run_partition(&pipeline, PartitionDate::parse("2024-01-03")?)
///     .with_source_version(12)
///     .await?;
/// assert_eq!(report.source_version, 12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a RunPartition does nothing until it is awaited"]
pub struct RunPartition {
    pipeline: Pipeline,
    date: PartitionDate,
    source_version: Option<u64>,
    allow_empty: bool,
    target_partitions: Option<usize>,
    checkpoint_in_background: bool,
    session: Session,
}

/// Starts building the run of `date` through `pipeline`.
pub fn run_partition(pipeline: &Pipeline, date: PartitionDate) -> RunPartition {
    RunPartition {
        pipeline: pipeline.clone(),
        date,
        source_version: None,
        allow_empty: false,
        target_partitions: None,
        checkpoint_in_background: false,
        session: Session::new(),
    }
}

impl RunPartition {
    /// Reads the source at this version instead of the latest.
    pub fn with_source_version(mut self, version: impl Into<Option<u64>>) -> Self {
        self.source_version = version.into();
        self
    }

    /// Writes an empty partition instead of failing when the source has no data in it.
    pub fn with_allow_empty(mut self, allow_empty: bool) -> Self {
        self.allow_empty = allow_empty;
        self
    }

    /// How many streams DataFusion splits the transform into (its `target_partitions`;
    /// by default the number of cores). Runs made side by side share the cores: a
    /// backfill of `--concurrency 2` on 2 cores runs each transform in one stream,
    /// which spares the repartitioning that a second stream costs.
    pub fn with_target_partitions(mut self, n: impl Into<Option<usize>>) -> Self {
        self.target_partitions = n.into().map(|n| n.max(1));
        self
    }

    /// Writes the target's checkpoint, when this run's commit is due one, in a task of
    /// its own rather than before the run returns, for a caller that goes on with other
    /// work meanwhile. Await [`checkpoints_written`](crate::checkpoints_written) before
    /// the runtime ends: a checkpoint cut short is not written (readers then replay
    /// the commits since the one before).
    ///
    /// Only targets latefill writes itself take this; others are checkpointed by
    /// delta-rs's write.
    pub fn with_checkpoint_in_background(mut self, in_background: bool) -> Self {
        self.checkpoint_in_background = in_background;
        self
    }

    /// Runs in `session`: the tables it keeps are advanced rather than read afresh, and
    /// what this run loads and writes is kept there for the next. Without it, the run
    /// has a session of its own.
    pub fn with_session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    async fn execute(self) -> Result<RunReport> {
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let pipeline = &self.pipeline;
        let partitioning = &pipeline.partitioning;
        let partition = pipeline.partition_name(self.date);

        let mut phases = Phases::new();

        // 1. Pin the source version and list the partition's files from the log.
        let session = &self.session;
        let source = open_source(
            session,
            &pipeline.source,
            &pipeline.source_storage,
            self.source_version,
        )
        .await?;
        let source_version = source.version().ok_or_else(|| {
            Error::Internal(format!(
                "source {} loaded without a version",
                pipeline.source
            ))
        })?;
        check_partitioned_by(&source, &pipeline.source, partitioning)?;
        let files = partition_files(&source, &pipeline.source, partitioning, self.date).await?;
        if self.source_version.is_some() {
            check_files_exist(session, &source, pipeline, self.date, &files).await?;
        }
        let values = raw_values(&files, partitioning);
        if files.is_empty() && !self.allow_empty {
            return Err(Error::PartitionEmpty {
                table: pipeline.source.clone(),
                partition,
                version: source_version,
            });
        }

        phases.mark("source");

        // 2. Plan the transform over exactly that partition.
        // delta-rs's session: its planner knows the nodes a Delta write adds.
        let ctx = deltalake::delta_datafusion::create_session().into_inner();
        if let Some(n) = self.target_partitions {
            ctx.state_ref()
                .write()
                .config_mut()
                .options_mut()
                .execution
                .target_partitions = n;
        }
        register_source(&ctx, &source, &pipeline.source, &values).await?;
        let result = plan_transform(&ctx, pipeline).await?;
        let result_schema: Schema = result.schema().as_arrow().clone();
        check_partition_columns(partitioning, &result_schema)?;

        phases.mark("plan");

        // 3. Check the result against the target before anything is written.
        let target = open_target_for(session, pipeline, &partition).await?;
        phases.mark("open target");
        if let Some(target) = &target {
            check_target_schema(target, &pipeline.target, &result_schema)?;
        }
        let rows_read = match rows_from_stats(&files) {
            Some(rows) => rows,
            None => count_rows(&ctx, &partition).await?,
        };

        // 4. Replace the partition: every partition of the period the target has,
        // and those this run writes (the source's values, passed through by the SQL),
        // recording the source version as an app transaction.
        let mut replaced = raw_values(
            &partition_files(target.as_ref(), &pipeline.target, partitioning, self.date).await?,
            partitioning,
        );
        for (column, values) in &values {
            replaced
                .entry(column.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
        let mut predicate: Option<Expr> = None;
        for column in partitioning.columns() {
            let target_type =
                target_column_type(&target, &pipeline.target, column, &result_schema)?;
            let mut members = replaced.remove(column).unwrap_or_default();
            members.extend(period_literals(
                partitioning,
                column,
                self.date,
                &target_type,
            ));
            let member_of = Expr::Column(Column::from_name(column)).in_list(
                members
                    .iter()
                    .map(|v| cast(lit(v.as_str()), target_type.clone()))
                    .collect(),
                false,
            );
            predicate = Some(match predicate {
                Some(p) => p.and(member_of),
                None => member_of,
            });
        }
        let predicate = predicate.expect("a partitioning has at least one column");
        // The txn says which source version the partition reflects; the commit info
        // says which transform made it, for `state rebuild`.
        let transform = pipeline.transform_version();
        let commit_info = serde_json::json!({
            "pipeline": pipeline.name,
            "partition": partition,
            "source_version": source_version,
            "transform": transform,
        });
        // Expired commits are removed at checkpoints only (below), not after every
        // commit: delta-rs's cleanup lists the whole log, so after every commit it made
        // each write cost more as the target's log grew.
        let commit = |metrics: Option<serde_json::Value>| {
            let mut metadata = vec![(COMMIT_INFO_KEY.to_owned(), commit_info.clone())];
            metadata.extend(metrics.map(|m| ("operationMetrics".to_owned(), m)));
            CommitProperties::default()
                .with_cleanup_expired_logs(Some(false))
                .with_application_transaction(Transaction::new(
                    pipeline.app_id(&partition),
                    source_version as i64,
                ))
                .with_metadata(metadata)
        };
        let watcher = crate::failpoint::abort_on_new_file(
            pipeline
                .target
                .to_file_path()
                .ok()
                .map(|p| p.join(&partition)),
        );
        phases.mark("target files");
        let (target_version, rows_written) = match target {
            // Data files side by side with other runs, then one commit at a time.
            Some(target) if crate::replace::supported(&target) => {
                let files = crate::replace::write_files(
                    &ctx,
                    result,
                    &target,
                    &pipeline.target,
                    &partition,
                    &predicate,
                )
                .await?;
                let rows = files.rows;
                phases.mark("data files");
                let version = crate::replace::commit(
                    session,
                    &pipeline.target,
                    &pipeline.target_storage,
                    &target,
                    partitioning,
                    self.date,
                    &partition,
                    files,
                    &predicate,
                    |metrics| commit(Some(metrics)),
                    self.checkpoint_in_background,
                )
                .await?;
                (version, rows)
            }
            target => {
                let creating = target.is_none();
                let target = match target {
                    Some(table) => table,
                    None => create_target_handle(pipeline).await?,
                };
                // A new target is checkpointed every 10 commits, as Spark does, so that
                // opening it replays at most 10 commits (delta-rs's default is 100).
                let configuration = creating
                    .then_some(("delta.checkpointInterval", Some(TARGET_CHECKPOINT_INTERVAL)));
                let written = target
                    .write(Vec::new())
                    .with_input_plan(result.into_unoptimized_plan())
                    .with_session_state(Arc::new(ctx.state()))
                    .with_save_mode(SaveMode::Overwrite)
                    .with_replace_where(predicate)
                    .with_partition_columns(partitioning.columns())
                    .with_configuration(configuration)
                    .with_commit_properties(commit(None))
                    .await
                    .map_err(|source| write_error(&pipeline.target, &partition, source))?;
                if creating {
                    latefill_core::storage::finish_new_table(&written, &pipeline.target).await;
                }
                session
                    .tables()
                    .remember(&pipeline.target, &pipeline.target_storage, &written);
                let version = written.version().ok_or_else(|| {
                    Error::Internal(format!(
                        "target {} has no version after a write",
                        pipeline.target
                    ))
                })?;
                cleanup_expired_logs_at_checkpoint(&written, &pipeline.target, version).await;
                // The partition's files are exactly those this commit wrote: their row
                // counts are in the log already read; the last commit's metrics cost
                // more requests.
                let rows = match rows_from_stats(
                    &partition_files(&written, &pipeline.target, partitioning, self.date).await?,
                ) {
                    Some(rows) => rows,
                    None => rows_added_by_last_commit(&written, &pipeline.target).await?,
                };
                (version, rows)
            }
        };
        if watcher.is_some() {
            // The data file appeared too briefly to be seen: the commit has landed.
            crate::failpoint::failpoint("mid-write");
        }
        phases.mark("write");
        phases.mark("rows written");
        tracing::debug!(%partition, phases = %phases, "partition run phases");

        Ok(RunReport {
            partition,
            period: self.date.to_string(),
            source_version,
            fingerprint: files_fingerprint(&files),
            transform,
            recovered: false,
            files_read: files.len(),
            rows_read,
            rows_written,
            target_version,
            started_at,
            finished_at: chrono::Utc::now(),
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// After the commit of `version`, when it was checkpointed: removes the commits older
/// than the target's log retention (`delta.logRetentionDuration`, 30 days by default),
/// as Delta writers do at checkpoints, unless `delta.enableExpiredLogCleanup` is off.
/// Best effort: the write has landed, and the next checkpoint tries again.
pub(crate) async fn cleanup_expired_logs_at_checkpoint(
    table: &DeltaTable,
    url: &Url,
    version: u64,
) {
    use deltalake::table::config::TablePropertiesExt;
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    let config = snapshot.table_config();
    if !(version + 1).is_multiple_of(config.checkpoint_interval().get())
        || !config.enable_expired_log_cleanup()
    {
        return;
    }
    let retention = config.log_retention_duration();
    let cutoff = chrono::Utc::now().timestamp_millis() - retention.as_millis() as i64;
    if let Err(e) = deltalake::checkpoints::cleanup_expired_logs_for(
        version,
        table.log_store().as_ref(),
        cutoff,
        None,
    )
    .await
    {
        tracing::warn!(table = %url, version, error = %e, "target: log cleanup failed");
    }
}

/// Where a partition run's time goes, for `-vv`: each phase's milliseconds.
struct Phases {
    last: Instant,
    marks: Vec<(&'static str, f64)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            last: Instant::now(),
            marks: Vec::new(),
        }
    }

    /// Ends the phase called `name`.
    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        let ms = now.duration_since(self.last).as_secs_f64() * 1000.0;
        self.marks.push((name, ms));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, ms)) in self.marks.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{name} {ms:.1} ms")?;
        }
        Ok(())
    }
}

impl IntoFuture for RunPartition {
    type Output = Result<RunReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            // A commit that conflicts with a concurrent one on the same partition (a
            // compaction, another rewrite) wrote nothing: run again on the fresh target.
            let mut attempt = 1;
            loop {
                match self.clone().execute().await {
                    Err(Error::TargetConflict {
                        table,
                        partition,
                        source,
                        ..
                    }) => {
                        if attempt == MAX_RUN_ATTEMPTS {
                            return Err(Error::TargetConflict {
                                table,
                                partition,
                                attempts: attempt,
                                source,
                            });
                        }
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        })
    }
}

/// The key of latefill's entry in the commit info of the target commits it makes:
/// `{"pipeline", "partition", "source_version", "transform"}`.
pub const COMMIT_INFO_KEY: &str = "latefill";

/// How many times a run is redone when its target commit conflicts.
const MAX_RUN_ATTEMPTS: usize = 5;

/// `delta.checkpointInterval` of a target latefill creates.
const TARGET_CHECKPOINT_INTERVAL: &str = "10";

/// Opens the source at `version`, or at its latest version.
async fn open_source(
    session: &Session,
    url: &Url,
    options: &StorageOptions,
    version: Option<u64>,
) -> Result<DeltaTable> {
    let not_found = |reason: String| Error::SourceNotFound {
        table: url.clone(),
        reason,
    };
    if is_local_without_log(url) {
        return Err(not_found(format!(
            "{} has no _delta_log directory",
            url.to_file_path().unwrap_or_default().display()
        )));
    }
    table_builder(url, options).map_err(|e| not_found(e.to_string()))?;
    // Once per process: later opens advance the table loaded first. A first load
    // starts from the newest checkpoint that covers the version, so a log whose early
    // commits were cleaned up reads as well as a whole one.
    let loaded = session.tables().load(url, options, version).await;
    match (loaded, version) {
        (Ok(table), _) => Ok(table),
        // An old version that does not load: say why, if the log tells.
        (Err(source), Some(requested)) => {
            Err(unreadable_version(url, options, requested, source).await)
        }
        (Err(DeltaTableError::NotATable(reason)), None) => Err(not_found(reason)),
        (Err(source), None) => {
            Err(load_error("source", url, options, "loading source", source).await)
        }
    }
}

/// The error for a table that failed to load: [`Error::DamagedLog`] when its log
/// is damaged (read again, by the detector's reader, to name the version), else the
/// load's own error.
pub(crate) async fn load_error(
    role: &'static str,
    url: &Url,
    options: &StorageOptions,
    action: &'static str,
    source: DeltaTableError,
) -> Error {
    match latefill_detector::log_damage(url, options).await {
        Some(damage) => Error::DamagedLog {
            role,
            table: url.clone(),
            source: damage,
        },
        None => Error::Delta {
            action,
            table: url.clone(),
            source,
        },
    }
}

/// Why version `requested` of the source did not load: beyond the latest, removed by
/// log cleanup, or else what delta-rs said.
async fn unreadable_version(
    url: &Url,
    options: &StorageOptions,
    requested: u64,
    source: DeltaTableError,
) -> Error {
    match latefill_detector::log_bounds(url, options).await {
        Ok(bounds) if requested > bounds.latest => Error::SourceVersionNotFound {
            table: url.clone(),
            requested,
            latest: bounds.latest,
        },
        Ok(bounds) if requested < bounds.oldest => Error::SourceVersionUnavailable {
            table: url.clone(),
            requested,
            reason: "log cleanup removed the commits that rebuild it".into(),
            oldest: bounds.oldest,
            latest: bounds.latest,
        },
        _ => match source {
            DeltaTableError::NotATable(reason) => Error::SourceNotFound {
                table: url.clone(),
                reason,
            },
            source => load_error("source", url, options, "loading source", source).await,
        },
    }
}

/// Fails with [`Error::SourceVersionUnavailable`] when a data file of the partition
/// at the loaded (old) version was removed by VACUUM. The latest version is always
/// whole, so only pinned versions need this check: a HEAD request per file.
async fn check_files_exist(
    session: &Session,
    source: &DeltaTable,
    pipeline: &Pipeline,
    period: PartitionDate,
    files: &[LogicalFileView],
) -> Result<()> {
    let url = &pipeline.source;
    let Some(path) = first_missing_file(source, url, files).await? else {
        return Ok(());
    };
    let requested = source.version().unwrap_or_default();
    let latest = open_source(session, url, &pipeline.source_storage, None)
        .await?
        .version()
        .unwrap_or(requested);
    Err(Error::SourceVersionUnavailable {
        table: url.clone(),
        requested,
        reason: format!(
            "VACUUM removed its data file {path} of partition {}",
            pipeline.partition_name(period)
        ),
        oldest: oldest_whole_version(session, pipeline, period, requested, latest).await?,
        latest,
    })
}

/// The first of `files` whose data file no longer exists (VACUUM removed it).
async fn first_missing_file(
    table: &DeltaTable,
    url: &Url,
    files: &[LogicalFileView],
) -> Result<Option<String>> {
    use deltalake::ObjectStoreError;
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let store = table.log_store().object_store(None);
    let locations: Vec<(String, deltalake::Path)> = files
        .iter()
        .map(|f| (f.path().into_owned(), f.object_store_path()))
        .collect();
    let mut heads = futures::stream::iter(locations)
        .map(|(path, location)| {
            let store = store.clone();
            async move { (path, store.head(&location).await) }
        })
        .buffer_unordered(16);
    while let Some((path, head)) = heads.next().await {
        match head {
            Ok(_) => {}
            Err(ObjectStoreError::NotFound { .. }) => return Ok(Some(path)),
            Err(e) => {
                return Err(Error::Delta {
                    action: "checking data files of source",
                    table: url.clone(),
                    source: e.into(),
                });
            }
        }
    }
    Ok(None)
}

/// The oldest version after `requested` at which every file of the partition
/// exists, by bisection: VACUUM removes files that stopped being live before some
/// time, so versions from some point on are whole.
async fn oldest_whole_version(
    session: &Session,
    pipeline: &Pipeline,
    period: PartitionDate,
    requested: u64,
    latest: u64,
) -> Result<u64> {
    let url = &pipeline.source;
    let (mut low, mut high) = (requested + 1, latest);
    while low < high {
        let middle = low + (high - low) / 2;
        let table = open_source(session, url, &pipeline.source_storage, Some(middle)).await?;
        let files = partition_files(&table, url, &pipeline.partitioning, period).await?;
        if first_missing_file(&table, url, &files).await?.is_some() {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(high)
}

fn check_partitioned_by(table: &DeltaTable, url: &Url, partitioning: &Partitioning) -> Result<()> {
    let actual = table
        .snapshot()
        .map_err(|source| Error::Delta {
            action: "reading the metadata of source",
            table: url.clone(),
            source,
        })?
        .metadata()
        .partition_columns()
        .to_vec();
    match partitioning
        .columns()
        .into_iter()
        .find(|column| !actual.iter().any(|c| c == column))
    {
        None => Ok(()),
        Some(column) => Err(Error::NotPartitionedBy {
            table: url.clone(),
            column: column.to_owned(),
            actual,
        }),
    }
}

/// The active files of one pipeline partition, selected from the log without
/// reading data: those whose partition values fall in `period`
/// ([`Partitioning::period_of`], as the planner decides), whatever other columns the
/// table is partitioned by. `table` may be `None` (a target not created yet).
pub(crate) async fn partition_files<'a>(
    table: impl Into<Option<&'a DeltaTable>>,
    url: &Url,
    partitioning: &Partitioning,
    period: PartitionDate,
) -> Result<Vec<LogicalFileView>> {
    let Some(table) = table.into() else {
        return Ok(Vec::new());
    };
    let files: Vec<LogicalFileView> =
        latefill_core::storage::active_files(table)
            .await
            .map_err(|source| Error::Delta {
                action: "listing partition files of",
                table: url.clone(),
                source,
            })?;
    Ok(files
        .into_iter()
        .filter(|f| period_of_file(partitioning, f) == Some(period))
        .collect())
}

/// The pipeline period a data file belongs to, from its partition values.
fn period_of_file(partitioning: &Partitioning, file: &LogicalFileView) -> Option<PartitionDate> {
    let values = file.partition_values_map();
    partitioning
        .period_of(|column| values.get(column).map(|v| v.as_deref()))
        .ok()
}

/// The distinct raw values of each partitioning column among `files`.
fn raw_values(
    files: &[LogicalFileView],
    partitioning: &Partitioning,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let values = file.partition_values_map();
        for column in partitioning.columns() {
            if let Some(Some(value)) = values.get(column) {
                out.entry(column.to_owned())
                    .or_default()
                    .insert(value.clone());
            }
        }
    }
    out
}

/// Values of `column`'s type inside `period`: its own form for strings, its start for
/// dates and timestamps; for a split hour's hour column, the hour with and without a
/// leading zero. Part of the target predicate, so that a partition written empty, or
/// by SQL that truncates the column to the period, is replaced too.
fn period_literals(
    partitioning: &Partitioning,
    column: &str,
    period: PartitionDate,
    data_type: &DataType,
) -> Vec<String> {
    use chrono::Timelike;
    if partitioning.hour_column() == Some(column) {
        let hour = period.start().hour();
        return if data_type.is_integer() {
            vec![hour.to_string()]
        } else {
            vec![hour.to_string(), format!("{hour:02}")]
        };
    }
    let text = match data_type {
        DataType::Date32 | DataType::Date64 => period.date().format("%Y-%m-%d").to_string(),
        DataType::Timestamp(..) => period.start().format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => partitioning.value_of(period),
    };
    vec![text]
}

/// The type of the partition column in the target, or in the result when the target
/// does not exist yet.
fn target_column_type(
    target: &Option<DeltaTable>,
    url: &Url,
    column: &str,
    result: &Schema,
) -> Result<DataType> {
    let field_type = |schema: &Schema| {
        schema
            .field_with_name(column)
            .ok()
            .map(|f| value_type(f.data_type()))
    };
    let from_target = match target {
        Some(t) => field_type(arrow_schema(t, url, "reading the schema of target")?.as_ref()),
        None => None,
    };
    from_target
        .or_else(|| field_type(result))
        .ok_or_else(|| Error::Internal(format!("no column {column} in the result or target {url}")))
}

/// Registers the partition's rows as the table `source`: those whose partition
/// columns hold one of `values` (every column's raw values among the partition's
/// files).
///
/// The Delta provider gets the partition predicate pushed down and prunes files from
/// the log, so files of other partitions are never opened.
async fn register_source(
    ctx: &SessionContext,
    table: &DeltaTable,
    url: &Url,
    values: &BTreeMap<String, BTreeSet<String>>,
) -> Result<()> {
    let internal = |e: DataFusionError| Error::Internal(format!("registering source {url}: {e}"));
    if values.is_empty() {
        let schema = arrow_schema(table, url, "reading the schema of source")?;
        let empty = MemTable::try_new(schema, vec![vec![]]).map_err(internal)?;
        ctx.register_table("source", Arc::new(empty))
            .map_err(internal)?;
        return Ok(());
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|source| Error::Delta {
            action: "registering the storage of source",
            table: url.clone(),
            source,
        })?;
    let provider = table.table_provider().await.map_err(internal)?;
    let mut rows = ctx.read_table(provider).map_err(internal)?;
    // The literal of a raw partition value, in its column's type.
    let mut typed: BTreeMap<&str, DataType> = BTreeMap::new();
    for column in values.keys() {
        let data_type = rows
            .schema()
            .as_arrow()
            .field_with_name(column)
            .map(|f| value_type(f.data_type()))
            .map_err(|e| internal(e.into()))?;
        typed.insert(column, data_type);
    }
    let literal = |column: &str, v: &str| cast(lit(v.to_owned()), typed[column].clone());
    // The partition's source partitions by their values: pushed down, they prune the
    // files of every other partition from the log.
    for (column, members) in values {
        rows = rows
            .filter(
                Expr::Column(Column::from_name(column))
                    .in_list(members.iter().map(|v| literal(column, v)).collect(), false),
            )
            .map_err(internal)?;
    }
    // A column with one value is a constant within the partition: present it as a
    // literal rather than the scan's per-row dictionary column. DataFusion then folds
    // it, e.g. out of GROUP BY keys; grouping 5M rows by it otherwise cost about two
    // thirds of a run of the default pipeline.
    let constant = |name: &str| {
        values
            .get(name)
            .filter(|members| members.len() == 1)
            .and_then(|members| members.first())
    };
    let columns: Vec<Expr> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| match constant(f.name()) {
            Some(value) => literal(f.name(), value).alias(f.name()),
            None => Expr::Column(Column::from_name(f.name())),
        })
        .collect();
    let rows = rows.select(columns).map_err(internal)?;
    ctx.register_table("source", rows.into_view())
        .map_err(internal)?;
    Ok(())
}

/// Plans the pipeline's transform over the table `source` registered in `ctx`:
/// DDL, DML and other statements are refused.
async fn plan_transform(
    ctx: &SessionContext,
    pipeline: &Pipeline,
) -> Result<deltalake::datafusion::dataframe::DataFrame> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    match &pipeline.transform {
        Transform::Sql(sql) => {
            ctx.sql_with_options(sql, options)
                .await
                .map_err(|source| Error::InvalidSql {
                    sql: sql.trim().to_owned(),
                    source,
                })
        }
        Transform::DataFrame(transform) => {
            let failed = |source| Error::InvalidTransform {
                version: pipeline.transform_version(),
                source,
            };
            let source = ctx.table("source").await.map_err(failed)?;
            transform.apply(source).map_err(failed)
        }
    }
}

/// The result must carry every partitioning column.
fn check_partition_columns(partitioning: &Partitioning, result: &Schema) -> Result<()> {
    match partitioning
        .columns()
        .into_iter()
        .find(|c| result.field_with_name(c).is_err())
    {
        None => Ok(()),
        Some(column) => Err(Error::MissingPartitionColumn {
            column: column.to_owned(),
            columns: result.fields().iter().map(|f| f.name().clone()).collect(),
        }),
    }
}

/// Checks what a run of `pipeline` can be refused for without reading a row, so
/// that a caller refuses it before it claims anything (and so writes nothing):
///
/// - the tables' locations ([`check_locations`]), and a target location that holds
///   someone else's files and no Delta table;
/// - the source (at `version`, or its latest) and its partitioning;
/// - the transform, planned over an empty partition of the source: the statement's
///   kind, parse and plan errors, unknown tables and columns, the partition columns,
///   and the result's columns and types against the target's schema.
///
/// The cost over a run is one planning of the transform: it checks the tables this
/// process keeps, or those loaded beside it ([`prefetch`]), as they are, without asking
/// the store for newer commits; only a refusal is checked again on the latest tables, so a table
/// kept from before its schema changed never refuses a run.
pub async fn preflight(session: &Session, pipeline: &Pipeline, version: Option<u64>) -> Result<()> {
    check_locations(pipeline)?;
    let tables = session.tables();
    let kept_source = match version {
        None => {
            tables
                .kept_or_awaited(&pipeline.source, &pipeline.source_storage)
                .await
        }
        Some(_) => None,
    };
    let kept_target = tables
        .kept_or_awaited(&pipeline.target, &pipeline.target_storage)
        .await;
    let any_kept = kept_source.is_some() || kept_target.is_some();
    let source = match kept_source {
        Some(table) => table,
        None => open_source(session, &pipeline.source, &pipeline.source_storage, version).await?,
    };
    let target = match kept_target {
        Some(table) => Some(table),
        None => open_target_or_check_location(session, pipeline).await?,
    };
    match check_plan(pipeline, &source, target.as_ref()).await {
        Err(_) if any_kept => {
            let source =
                open_source(session, &pipeline.source, &pipeline.source_storage, version).await?;
            let target = open_target_or_check_location(session, pipeline).await?;
            check_plan(pipeline, &source, target.as_ref()).await
        }
        checked => checked,
    }
}

/// The target, or `None` when there is none yet and latefill may create it there
/// ([`latefill_core::storage::check_new_location`]).
async fn open_target_or_check_location(
    session: &Session,
    pipeline: &Pipeline,
) -> Result<Option<DeltaTable>> {
    let target = open_target(session, pipeline).await?;
    let url = &pipeline.target;
    let missing_locally = url.to_file_path().is_ok_and(|path| !path.exists());
    if target.is_none() && !missing_locally {
        let handle = table_builder(url, &pipeline.target_storage)
            .and_then(DeltaTableBuilder::build)
            .map_err(|source| Error::Delta {
                action: "opening target",
                table: url.clone(),
                source,
            })?;
        latefill_core::storage::check_new_location(&handle, url, "target").await?;
    }
    Ok(target)
}

/// The checks of [`preflight`] on the given tables: the source's partitioning and
/// period column, the transform planned over an empty partition of it, and the
/// result against the target's schema.
async fn check_plan(
    pipeline: &Pipeline,
    source: &DeltaTable,
    target: Option<&DeltaTable>,
) -> Result<()> {
    check_partitioned_by(source, &pipeline.source, &pipeline.partitioning)?;
    check_period_column_type(source, pipeline)?;
    if pipeline.partitioning.format().is_none() {
        check_period_values(source, pipeline).await?;
    }
    let ctx = deltalake::delta_datafusion::create_session().into_inner();
    register_source(&ctx, source, &pipeline.source, &BTreeMap::new()).await?;
    let result = plan_transform(&ctx, pipeline).await?;
    let schema: Schema = result.schema().as_arrow().clone();
    check_partition_columns(&pipeline.partitioning, &schema)?;
    match target {
        Some(target) => check_target_schema(target, &pipeline.target, &schema),
        None => Ok(()),
    }
}

/// An integer period column holds periods only in a declared format (`20240503`
/// under `%Y%m%d`): without one, refused, naming the column, its type and the setting.
fn check_period_column_type(source: &DeltaTable, pipeline: &Pipeline) -> Result<()> {
    let partitioning = &pipeline.partitioning;
    if partitioning.format().is_some() {
        return Ok(());
    }
    let schema = arrow_schema(source, &pipeline.source, "reading the schema of source")?;
    let column = partitioning.column();
    let Ok(field) = schema.field_with_name(column) else {
        return Ok(());
    };
    let data_type = value_type(field.data_type());
    if !data_type.is_integer() {
        return Ok(());
    }
    let example = match partitioning.granularity() {
        latefill_core::partition::Granularity::Day => "%Y%m%d\" for 20240503",
        latefill_core::partition::Granularity::Hour => "%Y%m%d%H\" for 2024050305",
        latefill_core::partition::Granularity::Month => "%Y%m\" for 202405",
    };
    Err(Error::PeriodColumnType {
        table: pipeline.source.clone(),
        column: column.to_owned(),
        data_type: data_type.to_string(),
        granularity: partitioning.granularity().to_string(),
        example,
    })
}

/// A period column whose values are all of another form than the granularity's
/// (`20240503` for days, with no format declared) is refused, naming a value and the
/// setting, rather than every partition being reported empty. One value that is a
/// period (read from the log, in memory) is enough to go on.
async fn check_period_values(source: &DeltaTable, pipeline: &Pipeline) -> Result<()> {
    let partitioning = &pipeline.partitioning;
    let column = partitioning.column();
    let mut example: Option<String> = None;
    let mut files = source.get_active_add_actions_by_predicate(None);
    while let Some(file) = files.try_next().await.map_err(|source| Error::Delta {
        action: "listing files of source",
        table: pipeline.source.clone(),
        source,
    })? {
        let values = file.partition_values_map();
        let Some(Some(raw)) = values.get(column) else {
            continue;
        };
        if partitioning
            .period_of(|c| values.get(c).map(|v| v.as_deref()))
            .is_ok()
        {
            return Ok(());
        }
        example.get_or_insert_with(|| raw.clone());
    }
    match example {
        None => Ok(()),
        Some(value) => Err(Error::PeriodColumnValues {
            table: pipeline.source.clone(),
            column: column.to_owned(),
            value,
            expected: partitioning.granularity().what(),
        }),
    }
}

/// Checks the pipeline's table locations without asking a store: no table plays two
/// roles (the state table is neither the source nor the target), and no local
/// location is a regular file (or under one).
pub fn check_locations(pipeline: &Pipeline) -> Result<()> {
    use crate::project::same_table;
    for (role, url) in [("source", &pipeline.source), ("target", &pipeline.target)] {
        if same_table(url, &pipeline.state) {
            return Err(Error::InvalidLocation {
                role: "state",
                location: pipeline.state.to_string(),
                reason: format!(
                    "it is also the pipeline's {role} table; the state table must be a \
                     table of its own: set `state.table` to a new location"
                ),
            });
        }
    }
    for (role, url) in [
        ("source", &pipeline.source),
        ("target", &pipeline.target),
        ("state", &pipeline.state),
    ] {
        if let Some(reason) = latefill_core::storage::local_location_problem(url) {
            return Err(Error::InvalidLocation {
                role,
                location: url.to_string(),
                reason: format!("{reason}; set `{role}.table` to a table's directory"),
            });
        }
    }
    Ok(())
}

/// Rows in the files according to their log statistics, less deleted rows; `None`
/// when a file has no row count.
fn rows_from_stats(files: &[LogicalFileView]) -> Option<u64> {
    files.iter().try_fold(0u64, |total, file| {
        let records = file.num_records()? as u64;
        let deleted = file
            .deletion_vector_descriptor()
            .map_or(0, |dv| dv.cardinality.max(0) as u64);
        Some(total + records.saturating_sub(deleted))
    })
}

async fn count_rows(ctx: &SessionContext, partition: &str) -> Result<u64> {
    let execution = |source| Error::Execution {
        partition: partition.to_owned(),
        source,
    };
    let count = ctx
        .table("source")
        .await
        .map_err(execution)?
        .count()
        .await
        .map_err(execution)?;
    Ok(count as u64)
}

/// Loads the pipeline's source and target into the tables this process keeps, for a
/// caller with other work to do before its runs (detection, a claim): on an object
/// store their logs are read meanwhile, and the runs then only bring them up to date
/// (a run that opens one while it is loading waits for that load). Errors are left to
/// the runs, which meet them again and report them.
///
/// `source_too: false` for runs that read the source at a version of their own.
pub async fn prefetch(session: &Session, pipeline: &Pipeline, source_too: bool) {
    let load = async |url: &Url, options: &StorageOptions| {
        if is_local_without_log(url) {
            return;
        }
        if let Err(e) = session.tables().load(url, options, None).await {
            tracing::debug!(table = %url, error = %e, "prefetch: not loaded");
        }
    };
    let source = async {
        if source_too {
            load(&pipeline.source, &pipeline.source_storage).await;
        }
    };
    tokio::join!(source, load(&pipeline.target, &pipeline.target_storage));
}

/// Opens the target, or `None` when no table exists there yet.
async fn open_target(session: &Session, pipeline: &Pipeline) -> Result<Option<DeltaTable>> {
    let (url, options) = (&pipeline.target, &pipeline.target_storage);
    if is_local_without_log(url) {
        return Ok(None);
    }
    match session.tables().load(url, options, None).await {
        Ok(table) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(source) => Err(load_error("target", url, options, "opening target", source).await),
    }
}

/// Opens the target for a run of `partition`: the table this process keeps, as it is,
/// when the commits after its version are a few of this process's own for other
/// partitions ([`crate::replace::may_read`]); else the latest, as [`open_target`],
/// loaded afresh when the target may have been deleted and created again.
async fn open_target_for(
    session: &Session,
    pipeline: &Pipeline,
    partition: &str,
) -> Result<Option<DeltaTable>> {
    use crate::replace::KeptRead;
    let kept = session
        .tables()
        .kept(&pipeline.target, &pipeline.target_storage);
    if let Some(kept) = kept {
        match crate::replace::may_read(session, &pipeline.target, &kept, partition).await {
            KeptRead::AsIs => return Ok(Some(kept)),
            KeptRead::Latest => {}
            KeptRead::Afresh => session.tables().forget(&pipeline.target),
        }
    }
    open_target(session, pipeline).await
}

/// A handle on a target that does not exist yet; the first write creates it.
async fn create_target_handle(pipeline: &Pipeline) -> Result<DeltaTable> {
    let url = &pipeline.target;
    let delta = |source| Error::Delta {
        action: "creating target",
        table: url.clone(),
        source,
    };
    // A local store writes into an existing directory; object stores have none.
    if let Ok(path) = url.to_file_path() {
        std::fs::create_dir_all(&path).map_err(|e| delta(DeltaTableError::from(e)))?;
    }
    let table = table_builder(url, &pipeline.target_storage)
        .and_then(DeltaTableBuilder::build)
        .map_err(delta)?;
    latefill_core::storage::prepare_new_table(&table, url, "target").await?;
    Ok(table)
}

/// Compares the result's columns with the target's: same names, same order, types
/// that Delta stores alike.
fn check_target_schema(target: &DeltaTable, url: &Url, result: &Schema) -> Result<()> {
    let expected = arrow_schema(target, url, "reading the schema of target")?;
    let mismatch = |difference: String| Error::SchemaMismatch {
        table: url.clone(),
        difference,
    };
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    if names(&expected) != names(result) {
        let mut target_sorted = names(&expected);
        let mut result_sorted = names(result);
        target_sorted.sort();
        result_sorted.sort();
        if target_sorted != result_sorted {
            return Err(mismatch(format!(
                "target has columns {:?}, result has {:?}",
                names(&expected),
                names(result)
            )));
        }
    }
    for field in expected.fields() {
        let found = result
            .field_with_name(field.name())
            .expect("names compared above");
        if delta_type(field.data_type()) != delta_type(found.data_type()) {
            return Err(mismatch(format!(
                "column {:?}: target has {}, result has {}",
                field.name(),
                field.data_type(),
                found.data_type()
            )));
        }
    }
    Ok(())
}

/// Arrow types that Delta stores as the same logical type compare equal.
/// The table's schema at its loaded version, in Arrow terms.
fn arrow_schema(
    table: &DeltaTable,
    url: &Url,
    action: &'static str,
) -> Result<deltalake::arrow::datatypes::SchemaRef> {
    Ok(table
        .snapshot()
        .map_err(|source| Error::Delta {
            action,
            table: url.clone(),
            source,
        })?
        .snapshot()
        .arrow_schema())
}

/// The type of a column's values: a Delta scan gives partition columns as
/// dictionaries.
fn value_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, value) => value.as_ref().clone(),
        other => other.clone(),
    }
}

fn delta_type(t: &DataType) -> DataType {
    match t {
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => delta_type(value),
        other => other.clone(),
    }
}

pub(crate) fn write_error(url: &Url, partition: &str, source: DeltaTableError) -> Error {
    use deltalake::kernel::transaction::TransactionError;
    match source {
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_),
        } => Error::TargetConflict {
            table: url.clone(),
            partition: partition.to_owned(),
            attempts: 1,
            source,
        },
        DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. } => Error::Delta {
            action: "writing target",
            table: url.clone(),
            source,
        },
        // Anything else failed while computing or validating the partition's rows.
        other => Error::Execution {
            partition: partition.to_owned(),
            source: DataFusionError::External(Box::new(other)),
        },
    }
}

/// Reads `num_added_rows` from the operation metrics of the table's last commit.
async fn rows_added_by_last_commit(table: &DeltaTable, url: &Url) -> Result<u64> {
    let info = table
        .history(Some(1))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|source| Error::Delta {
            action: "reading the last commit of target",
            table: url.clone(),
            source,
        })?;
    info.first()
        .and_then(|c| c.info.get("operationMetrics"))
        .and_then(|m| m.get("num_added_rows"))
        .and_then(|n| n.as_u64())
        .ok_or_else(|| Error::Internal(format!("target {url}: last commit has no num_added_rows")))
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn fingerprints_ignore_order_and_see_any_change() {
        let a = fingerprint(["x/1.parquet", "x/2.parquet"]);
        assert_eq!(a, fingerprint(["x/2.parquet", "x/1.parquet"]));
        assert_ne!(a, fingerprint(["x/1.parquet"]));
        assert_ne!(a, fingerprint(["x/1.parquet", "x/3.parquet"]));
        assert!(a.starts_with("2:"));
    }
}
