//! Processing one partition: read it at a pinned source version, transform it with
//! DataFusion, and replace it in the target in one Delta commit.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::{Expr, cast, lit};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use latefill_core::TableVersion;
use latefill_core::partition::{PartitionDate, PartitionKey};
use latefill_core::storage::StorageOptions;
use serde::Serialize;
use url::Url;

use crate::audit::{AuditOutcome, Severity};
use crate::combine::combine_late_rows;
use crate::error::{Error, Result};
use crate::fingerprint::files_fingerprint;
use crate::group::Look;
use crate::pipeline::Pipeline;
use crate::preflight::{check_partition_columns, plan_transform};
use crate::session::Session;
use crate::source::{
    check_files_exist, check_partitioned_by, count_rows, open_source, partition_files,
    period_literals, raw_values, register_source, registered_schema, rows_from_stats,
};
use crate::strategy::{Candidate, Method, Processed, Reads, Strategy, choose};
use crate::target::{
    check_target_schema, cleanup_expired_logs_at_checkpoint, create_target_handle, open_target_for,
    rows_added_by_last_commit, target_column_type, write_error,
};

/// What one partition run did. Serialises to the `--output json` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// The partition, e.g. `event_time=2024-01-03`.
    pub partition: PartitionKey,
    /// The partition's period alone (`2024-01-03`), as `--date` takes it.
    #[serde(default)]
    pub period: String,
    /// The source version the partition was read at.
    pub source_version: TableVersion,
    /// How the partition was brought up to date; `None` when a run that died after
    /// its commit had done it (`recovered`).
    pub strategy: Option<Method>,
    /// Why the other strategy was not chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy_reason: Option<String>,
    /// Source data files read: the partition's, or for an incremental update those
    /// appended since it was processed.
    pub files_read: usize,
    /// Source rows read (of those files).
    pub rows_read: u64,
    /// Source bytes read (of those files).
    #[serde(default)]
    pub bytes_read: u64,
    /// The most memory, in bytes, the transform's operators held at once (as
    /// DataFusion accounts it: hash tables, sort buffers, batches in flight; not
    /// the process's whole footprint). `None` when nothing ran.
    #[serde(default)]
    pub memory_peak: Option<u64>,
    /// Rows written to the target partition.
    pub rows_written: u64,
    /// The target's version after the commit that replaced the partition.
    pub target_version: TableVersion,
    /// Fingerprint of the partition's source files at `source_version`
    /// ([`fingerprint`](crate::fingerprint())); equal fingerprints mean the same data.
    pub fingerprint: String,
    /// The transform's version ([`Pipeline::transform_version`]) that wrote it.
    pub transform: String,
    /// What each audit found (`[[audit]]`); those of severity `warn` may have failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audits: Vec<AuditOutcome>,
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

/// Processes one partition of a pipeline; build it with [`run_partition`] and await it.
///
/// ```no_run
/// # async fn example() -> latefill_executor::Result<()> {
/// use latefill_core::{PartitionDate, TableVersion};
/// use latefill_executor::{Pipeline, run_partition};
///
/// let pipeline = Pipeline::from_file("latefill.toml")?;
/// let report = run_partition(&pipeline, PartitionDate::parse("2024-01-03")?)
///     .with_source_version(TableVersion::new(12))
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
    source_version: Option<TableVersion>,
    allow_empty: bool,
    target_partitions: Option<usize>,
    checkpoint_in_background: bool,
    strategy: Strategy,
    processed: Option<Processed>,
    session: Session,
    /// Read as kept when current at that moment: the source, and the target.
    current_since: (Option<Instant>, Option<Instant>),
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
        strategy: pipeline.strategy,
        processed: None,
        session: Session::new(),
        current_since: (None, None),
    }
}

impl RunPartition {
    /// Reads the source at this version instead of the latest.
    pub fn with_source_version(mut self, version: impl Into<Option<TableVersion>>) -> Self {
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
    /// work meanwhile. Await [`Session::checkpoints_written`](crate::Session::checkpoints_written) before
    /// the runtime ends: a checkpoint cut short is not written (readers then replay
    /// the commits since the one before).
    ///
    /// Only targets latefill writes itself take this; others are checkpointed by
    /// delta-rs's write.
    pub fn with_checkpoint_in_background(mut self, in_background: bool) -> Self {
        self.checkpoint_in_background = in_background;
        self
    }

    /// Which strategies the run may use (by default the pipeline's,
    /// [`Pipeline::strategy`]).
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// What the partition was last processed at, from the state table: an
    /// incremental update starts from it. Without it, the run replaces the partition.
    pub fn with_processed(mut self, processed: impl Into<Option<Processed>>) -> Self {
        self.processed = processed.into();
        self
    }

    /// Reads the source (unless [`with_source_version`](Self::with_source_version)
    /// pins one) and the target as `session` keeps them when they were known to be
    /// the latest at `since` or after ([`Tables::current_since`]), rather than
    /// looking for newer commits: for a caller that loaded them for this run (a
    /// daily run loads them while it detects and claims). The target commit is
    /// checked against any commit another writer made since, as always.
    ///
    /// [`Tables::current_since`]: latefill_core::storage::Tables::current_since
    pub fn with_tables_current_since(mut self, since: impl Into<Option<Instant>>) -> Self {
        let since = since.into();
        self.current_since = (since, since);
        self
    }

    /// [`with_tables_current_since`](Self::with_tables_current_since) for the source
    /// alone: the target is brought up to date as usual. For a caller that pins the
    /// source it planned from for all its runs (a backfill reads the source as of its
    /// start) while other writers, or its own runs, commit to the target.
    pub fn with_source_current_since(mut self, since: impl Into<Option<Instant>>) -> Self {
        self.current_since.0 = since.into();
        self
    }

    /// Runs in `session`: the tables it keeps are advanced rather than read afresh, and
    /// what this run loads and writes is kept there for the next. Without it, the run
    /// has a session of its own.
    pub fn with_session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    /// Runs the partition once. `look` is set when the run reads the target this
    /// process keeps as it is: whether that table is still there, which the run
    /// awaits before it commits ([`crate::replace::may_read`]); where it says no, the
    /// run stops, and is run again (see [`RunPartition::into_future`]).
    async fn execute(self, look: &mut Option<Look>) -> Result<RunReport> {
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let pipeline = &self.pipeline;
        let partitioning = &pipeline.partitioning;
        let key = pipeline.partitioning.key(self.date);
        let partition = &key;

        let mut phases = Phases::new();

        // 1. Pin the source version and list the partition's files from the log. The
        // target is brought up to date meanwhile (on an object store, each is a
        // listing: one round trip for both instead of one after the other); it is
        // looked at once the transform is planned.
        let session = &self.session;
        let current = |since: Option<Instant>, url: &Url, options: &StorageOptions| {
            session.tables().current_since(url, options, since?)
        };
        let (source_since, target_since) = self.current_since;
        let (source, target) = tokio::join!(
            async {
                match current(source_since, &pipeline.source, &pipeline.source_storage) {
                    Some(source) if self.source_version.is_none() => Ok(source),
                    _ => {
                        open_source(
                            session,
                            &pipeline.source,
                            &pipeline.source_storage,
                            self.source_version,
                        )
                        .await
                    }
                }
            },
            async {
                match current(target_since, &pipeline.target, &pipeline.target_storage) {
                    Some(target) => Ok((Some(target), None)),
                    None => open_target_for(session, pipeline, partition).await,
                }
            }
        );
        let target = target.map(|(table, kept)| {
            *look = kept;
            table
        });
        let source = source?;
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
                partition: key.clone(),
                version: source_version.into(),
            });
        }

        phases.mark("source");

        // 2. Plan the transform over exactly that partition.
        let ctx = session_context(self.target_partitions, pipeline.memory_limit);
        register_source(&ctx, &source, &pipeline.source, &values, None).await?;
        let result = plan_transform(&ctx, pipeline).await?;
        let result_schema: Schema = result.schema().as_arrow().clone();
        check_partition_columns(partitioning, &result_schema)?;

        phases.mark("plan");

        // 3. Check the result against the target before anything is written.
        let target = target?;
        // No target yet: one run of the session creates it, the others wait for it
        // and then write to it (the gate is held until this run has written).
        let (target, _creating) = match target {
            Some(target) => (Some(target), None),
            None => {
                let mut gate = session.creation(&pipeline.target).lock_owned().await;
                // A run that went through the gate first may have created it: this
                // process then keeps the table it made, as of after this run began
                // (its commit is checked against any made since, as always). The first
                // run through has just looked. Another process that creates it
                // meanwhile takes version 0 first: this run's create then fails.
                let been_through = std::mem::replace(&mut *gate, true);
                let made_here = || {
                    session.tables().current_since(
                        &pipeline.target,
                        &pipeline.target_storage,
                        started,
                    )
                };
                let found = match (been_through, made_here()) {
                    (true, Some(made)) => Some(made),
                    (true, None) => {
                        let (table, kept) = open_target_for(session, pipeline, partition).await?;
                        *look = kept;
                        table
                    }
                    (false, _) => None,
                };
                match found {
                    Some(target) => (Some(target), None),
                    None => (None, Some(gate)),
                }
            }
        };
        phases.mark("open target");
        if let Some(target) = &target {
            check_target_schema(target, &pipeline.target, &result_schema)?;
        }
        let target_files =
            partition_files(target.as_ref(), &pipeline.target, partitioning, self.date).await?;

        // 4. Replace or update: from the plan, the state table's record and the logs.
        let choice = choose(Candidate {
            pipeline,
            strategy: self.strategy,
            processed: self.processed.as_ref(),
            date: self.date,
            partition,
            source: &source,
            files: &files,
            target: target.as_ref(),
            target_files: &target_files,
            source_schema: registered_schema(&ctx).await?,
        })
        .await?;
        phases.mark("strategy");
        let (ctx, result, read) = match (&choice.update, &target) {
            (Some((appended, how)), Some(target)) => {
                let ctx = session_context(self.target_partitions, pipeline.memory_limit);
                let combined = combine_late_rows(
                    &ctx,
                    pipeline,
                    partition.as_str(),
                    &source,
                    &values,
                    &appended.files,
                    target,
                    &target_files,
                    how,
                )
                .await?;
                let read = Reads {
                    files: appended.files.len(),
                    rows: appended.rows,
                    bytes: appended.bytes,
                };
                (ctx, combined, read)
            }
            _ => (ctx, result, choice.replace),
        };
        let rows_read = match read.rows {
            Some(rows) => rows,
            None => count_rows(&ctx, partition).await?,
        };

        // 5. Audit the result before anything is written: held in memory once, read by
        // the audits and then by the write.
        let (result, audits) = if pipeline.audits.is_empty() {
            (result, Vec::new())
        } else {
            let execution = |source| Error::Execution {
                partition: key.clone(),
                source,
            };
            let result = result.cache().await.map_err(execution)?;
            let rows_in = match (choice.update.is_some(), choice.replace.rows) {
                (false, _) => Some(rows_read),
                (true, rows) => rows,
            };
            let audits = audit_result(
                &ctx, pipeline, partition, &source, &values, &result, rows_in,
            )
            .await?;
            phases.mark("audits");
            (result, audits)
        };

        // 6. Replace the partition: every partition of the period the target has,
        // and those this run writes (the source's values, passed through by the SQL),
        // recording the source version as an app transaction.
        let mut replaced = raw_values(&target_files, partitioning);
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
        let txn = Transaction::new(pipeline.app_id(partition), source_version as i64);
        // Expired commits are removed at checkpoints only (below), not after every
        // commit: delta-rs's cleanup lists the whole log, so after every commit it made
        // each write cost more as the target's log grew.
        let properties = || {
            CommitProperties::default()
                .with_cleanup_expired_logs(Some(false))
                .with_application_transaction(txn.clone())
                .with_metadata([(COMMIT_INFO_KEY.to_owned(), commit_info.clone())])
        };
        let watcher = crate::failpoint::abort_on_new_file(
            pipeline
                .target
                .to_file_path()
                .ok()
                .map(|p| p.join(partition.as_str())),
        );
        phases.mark("target files");
        let (target_version, rows_written) = match target {
            // Data files side by side with other runs, then one commit at a time.
            Some(target) if crate::replace::supported(&target) => {
                let _writing = session.commits(&pipeline.target).writing();
                let files = crate::replace::write_files(
                    &ctx,
                    result,
                    &target,
                    &pipeline.target,
                    partition,
                    &predicate,
                )
                .await?;
                let rows = files.rows;
                phases.mark("data files");
                if !still_there(look).await {
                    crate::replace::delete_written(&target, &pipeline.target, &files).await;
                    return Err(gone(&pipeline.target));
                }
                let version = crate::replace::commit(
                    session,
                    &pipeline.target,
                    &pipeline.target_storage,
                    &target,
                    partitioning,
                    self.date,
                    partition,
                    files,
                    &predicate,
                    commit_info.clone(),
                    txn.clone(),
                    self.checkpoint_in_background,
                )
                .await?;
                (version, rows)
            }
            target => {
                if !still_there(look).await {
                    return Err(gone(&pipeline.target));
                }
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
                    .with_commit_properties(properties())
                    .await
                    .map_err(|source| write_error(&pipeline.target, partition, source))?;
                if creating {
                    latefill_core::storage::finish_new_table(&written, &pipeline.target);
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
            partition: key,
            period: self.date.to_string(),
            source_version: source_version.into(),
            fingerprint: files_fingerprint(&files),
            transform,
            recovered: false,
            strategy: Some(choice.strategy),
            strategy_reason: Some(choice.reason),
            files_read: read.files,
            rows_read,
            bytes_read: read.bytes,
            memory_peak: crate::memory::peak_of(&ctx),
            audits,
            rows_written,
            target_version: target_version.into(),
            started_at,
            finished_at: chrono::Utc::now(),
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Runs `pipeline`'s audits on `result`, the partition's result, with the
/// partition's source rows (at `source`'s version, raw partition values `values`) as
/// the table `source`; `rows_in` counts them when the log's statistics do. An audit
/// of severity `error` that fails is [`Error::AuditFailed`]. The audits' session
/// shares `run`'s memory pool (its memory limit).
async fn audit_result(
    run: &deltalake::datafusion::prelude::SessionContext,
    pipeline: &Pipeline,
    partition: &PartitionKey,
    source: &deltalake::DeltaTable,
    values: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    result: &deltalake::datafusion::dataframe::DataFrame,
    rows_in: Option<u64>,
) -> Result<Vec<AuditOutcome>> {
    let execution = |source| Error::Execution {
        partition: partition.clone(),
        source,
    };
    let ctx = deltalake::datafusion::prelude::SessionContext::new_with_config_rt(
        deltalake::datafusion::prelude::SessionConfig::new(),
        run.runtime_env(),
    );
    ctx.register_table("result", result.clone().into_view())
        .map_err(execution)?;
    register_source(&ctx, source, &pipeline.source, values, None).await?;
    let rows_out = result.clone().count().await.map_err(execution)? as u64;
    let rows_in = match rows_in {
        Some(rows) => rows,
        None => count_rows(&ctx, partition).await?,
    };
    let mut outcomes = Vec::with_capacity(pipeline.audits.len());
    for audit in &pipeline.audits {
        let outcome = audit
            .run(&ctx, rows_in, rows_out)
            .await
            .map_err(Error::AuditInvalid)?;
        if !outcome.passed {
            if audit.severity == Severity::Error {
                return Err(Error::AuditFailed {
                    partition: partition.clone(),
                    audit: outcome.name,
                    message: outcome.message,
                    samples: outcome.samples,
                });
            }
            tracing::warn!(%partition, audit = %outcome.name, message = %outcome.message, "audit warning");
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A DataFusion session for a run: delta-rs's (its planner knows the nodes a Delta
/// write adds) with Parquet footers read in one request ([`crate::parquet_hint`]),
/// split into `target_partitions` streams when given, and holding at most
/// `memory_limit` bytes at once when given: sorts and aggregations then spill to the
/// operating system's temporary directory (`TMPDIR`) beyond it. Its pool remembers
/// the most it held ([`crate::memory::peak_of`]).
///
/// Under a memory limit the plan runs as one stream, whatever `target_partitions`
/// says: DataFusion 55's `RepartitionExec` can wait forever when it spills under a
/// limit, every thread parked and no error (apache/datafusion#24883, fixed after
/// 55). One stream has no repartition. A `run --memory-limit 1MB` of latefill's own
/// tests hung so, once in a full test run on 2 cores.
pub(crate) fn session_context(
    target_partitions: Option<usize>,
    memory_limit: Option<u64>,
) -> deltalake::datafusion::prelude::SessionContext {
    let pool = crate::memory::PeakPool::new(memory_limit);
    let runtime = deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()
        .expect("a runtime of a memory pool and the default disk manager builds");
    let hint = crate::parquet_hint::ParquetMetadataHint::new(runtime.clone());
    let delta =
        deltalake::delta_datafusion::DeltaSessionContext::with_runtime_env(runtime).into_inner();
    let state =
        deltalake::datafusion::execution::SessionStateBuilder::new_from_existing(delta.state())
            .with_physical_optimizer_rule(Arc::new(hint))
            .build();
    let ctx = deltalake::datafusion::prelude::SessionContext::new_with_state(state);
    let target_partitions = match memory_limit {
        Some(_) => Some(1),
        None => target_partitions,
    };
    if let Some(n) = target_partitions {
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .target_partitions = n;
    }
    ctx
}

/// Where a partition run's time goes, for `-vv`: each phase's milliseconds.
pub(crate) struct Phases {
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
            let limit = self.pipeline.memory_limit;
            loop {
                let mut look = None;
                let outcome = self.clone().execute(&mut look).await;
                // A run that read the table this process keeps, where another is now
                // (deleted, or deleted and created again), wrote nothing to it: run
                // again on the target loaded afresh. Whatever else it met (an error
                // in its schema check, say) was met on the wrong table.
                if attempt < MAX_RUN_ATTEMPTS && !still_there(&look).await {
                    self.session.tables().forget(&self.pipeline.target);
                    attempt += 1;
                    continue;
                }
                match outcome.map_err(|e| e.under_memory_limit(limit)) {
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

/// Whether the table a run read, the one this process keeps, is still the target
/// (`look`, [`crate::replace::may_read`]); a run that read the latest has no look.
async fn still_there(look: &Option<Look>) -> bool {
    match look {
        Some(look) => look.clone().await,
        None => true,
    }
}

/// What a run that read a target no longer there returns: it is run again.
fn gone(url: &Url) -> Error {
    Error::Internal(format!(
        "the target {url} this process read is no longer there (deleted, or created again)"
    ))
}

/// The key of latefill's entry in the commit info of the target commits it makes:
/// `{"pipeline", "partition", "source_version", "transform"}`.
pub const COMMIT_INFO_KEY: &str = "latefill";

/// How many times a run is redone when its target commit conflicts.
pub(crate) const MAX_RUN_ATTEMPTS: usize = 5;

/// `delta.checkpointInterval` of a target latefill creates.
pub(crate) const TARGET_CHECKPOINT_INTERVAL: &str = "10";

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::physical_plan::displayable;

    /// The physical plan of a grouped aggregation over two partitions of rows, in a
    /// run's session.
    async fn grouped_plan(target_partitions: usize, memory_limit: Option<u64>) -> String {
        let schema = Arc::new(Schema::new(vec![Field::new("g", DataType::Int64, false)]));
        let batch = |from: i64| {
            let values: Vec<i64> = (from..from + 1000).map(|v| v % 13).collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let table =
            MemTable::try_new(schema.clone(), vec![vec![batch(0)], vec![batch(1000)]]).unwrap();
        let ctx = super::session_context(Some(target_partitions), memory_limit);
        ctx.register_table("t", Arc::new(table)).unwrap();
        let plan = ctx
            .sql("SELECT g, count(*) FROM t GROUP BY g")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        displayable(plan.as_ref()).indent(false).to_string()
    }

    /// DataFusion 55's repartition can wait forever when it spills under a memory
    /// limit (apache/datafusion#24883): a run under a limit plans none.
    #[tokio::test]
    async fn a_run_under_a_memory_limit_plans_no_repartition() {
        let unlimited = grouped_plan(2, None).await;
        assert!(unlimited.contains("RepartitionExec"), "{unlimited}");
        let limited = grouped_plan(2, Some(64 << 20)).await;
        assert!(!limited.contains("RepartitionExec"), "{limited}");
    }
}
