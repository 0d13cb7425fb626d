//! The engine: a pipeline's state table, detector and executor working together.
//!
//! ```text
//!  run_date(D) ─► claim D ─► run_partition(D) @V ─► complete(D, V)
//!              └► detect (cursor from the state table) ─► plan_late ─► for each late P:
//!                                                                      claim P, run P, complete P
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use latefill_core::storage::LogPack;
use latefill_core::{PartitionDate, PartitionKey, RunId, TableVersion};
use latefill_executor::{
    Pipeline, RunReport, Session, failpoint, inspect_partition, run_partition, target_txn_version,
};
use latefill_state::{Clock, PartitionState, StateTable, Status};
use serde::Serialize;

use crate::plan::LatePartition;

pub(crate) mod batch;
mod detect;
mod hand_out;
mod lateness;
mod requests;
mod status;

use batch::BackfillEvent;
pub(crate) use detect::processed_of;
pub use detect::{Detection, DetectionSummary};
pub use hand_out::BackfillPlan;
pub use lateness::{Bucket, Coverage, Distribution, LateChange, LatenessReport};
pub use requests::{Detect, Process, RunDate};
pub use status::StatusRow;

/// Errors of the engine: those of its parts, plus its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Processing a partition failed.
    #[error(transparent)]
    Executor(#[from] latefill_executor::Error),
    /// The state table refused or failed a transition.
    #[error(transparent)]
    State(#[from] latefill_state::Error),
    /// Reading the source's log failed.
    #[error(transparent)]
    Detector(#[from] latefill_detector::Error),
    /// Writing the backfill plan failed.
    #[error("writing the backfill plan to {}: {source}", path.display())]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl From<latefill_core::InvalidPeriod> for Error {
    fn from(e: latefill_core::InvalidPeriod) -> Self {
        Error::Executor(e.into())
    }
}

impl Error {
    /// The class of this error: its part's, or storage for the plan file.
    pub fn class(&self) -> latefill_core::ErrorClass {
        match self {
            Error::Executor(e) => e.class(),
            Error::State(e) => e.class(),
            Error::Detector(e) => e.class(),
            Error::PlanFile { .. } => latefill_core::ErrorClass::Storage,
        }
    }
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A partition that was planned but not reprocessed by this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The partition.
    pub partition: PartitionKey,
    /// Why: claimed by another run, or the error that failed it.
    pub reason: String,
}

/// What `run_date` did. Serialises as the run's report with the late-data fields
/// beside it.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The run of the date itself.
    #[serde(flatten)]
    pub run: RunReport,
    /// How the source's log was read.
    pub detection: DetectionSummary,
    /// The late partitions found before the date.
    pub late: Vec<LatePartition>,
    /// The late partitions reprocessed by this run.
    pub backfilled: Vec<RunReport>,
    /// Late partitions another run held, or whose reprocessing failed.
    pub skipped: Vec<Skipped>,
    /// Late partitions that failed.
    pub failed: Vec<Skipped>,
    /// Where the plan was written for an external scheduler, if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_config: Option<PathBuf>,
}

/// What to do with late partitions after the date's own run.
#[derive(Debug, Clone, Default)]
pub enum LateHandling {
    /// Reprocess them in this run (the default).
    #[default]
    InProcess,
    /// Only report them.
    ReportOnly,
    /// Claim them and write the plan to this file for an external scheduler.
    PlanFile(PathBuf),
}

/// Stops a [`Engine::run_date`] or a backfill between partitions and tells which
/// claims it holds,
/// for a caller that handles signals: after [`RunControl::stop`] the run finishes the
/// partition it is processing and starts no other (the late partitions not started
/// are reported as skipped); the claims [`RunControl::held`] lists are those to give
/// back when the caller abandons the run.
#[derive(Debug, Default)]
pub struct RunControl {
    stop: std::sync::atomic::AtomicBool,
    held: std::sync::Mutex<std::collections::BTreeSet<PartitionKey>>,
}

impl RunControl {
    /// Asks the run to stop after the partition it is processing; `true` when it
    /// had been asked already.
    pub fn stop(&self) -> bool {
        self.stop.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the run was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The partitions the run has claimed and not yet completed or failed.
    pub fn held(&self) -> Vec<PartitionKey> {
        self.held
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect()
    }

    fn hold(&self, partition: &PartitionKey) {
        self.held
            .lock()
            .expect("not poisoned")
            .insert(partition.clone());
    }

    fn let_go(&self, partition: &PartitionKey) {
        self.held.lock().expect("not poisoned").remove(partition);
    }

    /// The flag [`RunControl::stop`] sets, for the backfill's loop.
    pub(crate) fn stop_flag(&self) -> &std::sync::atomic::AtomicBool {
        &self.stop
    }

    /// Keeps [`RunControl::held`] up to date from a batch's events.
    pub(crate) fn track(&self, event: &BackfillEvent) {
        match event {
            BackfillEvent::Claimed { partitions } => partitions.iter().for_each(|p| self.hold(p)),
            BackfillEvent::Processed(r) => self.let_go(&r.partition),
            BackfillEvent::Skipped(s) | BackfillEvent::Failed(s) => self.let_go(&s.partition),
            BackfillEvent::Planned { .. } | BackfillEvent::Started { .. } => {}
        }
    }
}

/// Options of [`Engine::run_date`], set with [`RunDate`]'s methods.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunDateOptions {
    /// Read the date's source at this version instead of the latest.
    pub(crate) source_version: Option<TableVersion>,
    /// Write an empty partition when the date has no data.
    pub(crate) allow_empty: bool,
    /// What to do with late partitions.
    pub(crate) backfill: LateHandling,
    /// Only consider partitions at most this many days before the date.
    pub(crate) lookback_days: Option<u32>,
    /// Stops the run between partitions and tracks its claims (signal handling).
    pub(crate) control: Option<Arc<RunControl>>,
}

/// How [`Engine::process_with`] runs a partition, beyond its date.
#[derive(Debug, Default)]
struct How<'a> {
    /// Read the source at this version instead of the latest.
    source_version: Option<TableVersion>,
    /// Write an empty partition when the date has no data.
    allow_empty: bool,
    /// Claim only if the partition's row is still this one (as planned).
    seen: Option<Option<&'a PartitionState>>,
    /// The detection cursor to save with the completion.
    cursor: Option<&'a str>,
    /// Tracks the claim (signal handling).
    control: Option<&'a RunControl>,
    /// Which tables to read as kept rather than look for newer commits.
    kept: Kept,
}

/// How a partition's run shares the process with the runs beside it.
#[derive(Debug, Default)]
pub(crate) struct Beside {
    /// How many streams its transform is split into (by default, one per core).
    pub(crate) target_partitions: Option<usize>,
    /// Which tables it reads as kept.
    pub(crate) kept: Kept,
}

/// Which tables a partition's run reads as the engine's session keeps them, when they
/// were current at a moment, rather than looking for newer commits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Kept {
    /// Neither: both are brought up to date.
    #[default]
    Neither,
    /// The source, as loaded for the plan (a backfill reads the source as of its
    /// start, [`latefill_executor::RunPartition::with_source_current_since`]).
    Source(std::time::Instant),
    /// The source and the target (a daily run reads both as loaded while it detected
    /// and claimed, [`latefill_executor::RunPartition::with_tables_current_since`]).
    Tables(std::time::Instant),
}

/// A pipeline's engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    pipeline: Pipeline,
    state: StateTable,
    run_id: RunId,
    /// The tables this engine keeps between calls, and its commits and checkpoints
    /// under way: passed down to every run, never a process global.
    session: Session,
    /// Each partition's last change as this engine's last detection saw it (its
    /// version and commit time), which a completion records when it was late.
    last_changes: Arc<std::sync::Mutex<LastChanges>>,
}

/// Partition -> the version and time of its last data change.
pub(crate) type LastChanges =
    std::collections::BTreeMap<PartitionKey, (TableVersion, Option<chrono::DateTime<Utc>>)>;

impl Engine {
    /// What the state table records of a processed partition: with the partition's
    /// last change as the detection saw it, which the state keeps as a late change
    /// when it came after the version the partition was processed at before.
    pub(crate) fn completion(&self, report: &RunReport) -> latefill_state::Completion {
        let mut detail = run_detail(report);
        let last = self
            .last_changes
            .lock()
            .expect("not poisoned")
            .get(&report.partition)
            .copied();
        if let Some((version, committed_at)) = last
            && version <= report.source_version
        {
            detail["last_change"] = serde_json::json!({
                "version": version,
                "committed_at": committed_at,
            });
        }
        latefill_state::Completion {
            partition: report.partition.clone(),
            source_version: report.source_version,
            fingerprint: Some(report.fingerprint.clone()),
            transform: Some(report.transform.clone()),
            detail: Some(detail.to_string()),
        }
    }

    /// Keeps the exact last changes of `changes` for [`Engine::completion`].
    pub(crate) fn remember_changes(
        &self,
        changes: &[crate::plan::Change],
        source: &latefill_detector::Changes,
    ) {
        let mut last = self.last_changes.lock().expect("not poisoned");
        for change in changes.iter().filter(|c| c.exact) {
            last.insert(
                change.partition.clone(),
                (
                    change.last_change_version,
                    source.committed_at(change.last_change_version),
                ),
            );
        }
    }
}

/// What the state table keeps of a run (its `detail`, shown by `status` as
/// `last_run`): when and how long, the strategy, rows and bytes, and the audits that
/// warned.
pub(crate) fn run_detail(report: &RunReport) -> serde_json::Value {
    let warnings: Vec<&latefill_executor::audit::AuditOutcome> =
        report.audits.iter().filter(|a| !a.passed).collect();
    let mut detail = serde_json::json!({
        "started_at": report.started_at,
        "duration_ms": report.duration_ms,
        "strategy": report.strategy,
        "rows_read": report.rows_read,
        "bytes_read": report.bytes_read,
        "rows_written": report.rows_written,
        "target_version": report.target_version,
    });
    if report.recovered {
        detail["recovered"] = true.into();
    }
    if !warnings.is_empty() {
        detail["audit_warnings"] = serde_json::to_value(warnings).unwrap_or_default();
    }
    detail
}

impl Engine {
    /// An engine for `pipeline`, with its state table and a fresh run id.
    pub fn new(pipeline: Pipeline) -> Self {
        let mut state = StateTable::new(
            pipeline.state.clone(),
            pipeline.name.clone(),
            pipeline.partitioning.clone(),
        )
        .with_storage_options(pipeline.state_storage.clone());
        if let Some(retention) = pipeline.state_retention {
            state = state.with_retention(retention);
        }
        Engine {
            pipeline,
            state,
            run_id: RunId::new(),
            session: Session::new(),
            last_changes: Arc::default(),
        }
    }

    /// Works in `session`, e.g. one shared by the engines of a project, whose
    /// pipelines read each other's targets: what one wrote, the next advances.
    pub fn with_session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    /// The session this engine works in.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Uses `clock` for leases (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.state = self.state.with_clock(clock);
        self
    }

    /// How long this engine's claims hold before another run may take them over.
    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.state = self.state.with_lease(lease);
        self
    }

    /// Runs as `run_id`, e.g. to take over claims made for an external scheduler.
    pub fn with_run_id(mut self, run_id: impl Into<RunId>) -> Self {
        self.run_id = run_id.into();
        self
    }

    /// The run id of this engine's claims.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The state table.
    pub fn state(&self) -> &StateTable {
        &self.state
    }

    pub(crate) async fn process_now(
        &self,
        date: PartitionDate,
        source_version: Option<TableVersion>,
        allow_empty: bool,
    ) -> Result<RunReport> {
        latefill_executor::preflight(&self.session, &self.pipeline, source_version).await?;
        let how = How {
            source_version,
            allow_empty,
            ..How::default()
        };
        self.process_with(date, how).await
    }

    /// [`Engine::process`] for a partition planned from `seen` (its state row when
    /// planned): claimed only if that row is unchanged, so that a partition planned by
    /// two runs from the same state is processed by one of them only
    /// ([`latefill_state::Error::ChangedSincePlanned`] for the other).
    pub async fn process_planned(
        &self,
        date: PartitionDate,
        seen: Option<&PartitionState>,
    ) -> Result<RunReport> {
        let how = How {
            allow_empty: true,
            seen: Some(seen),
            ..How::default()
        };
        self.process_with(date, how).await
    }

    async fn process_with(&self, date: PartitionDate, how: How<'_>) -> Result<RunReport> {
        let How {
            source_version,
            allow_empty,
            seen,
            cursor,
            control,
            kept,
        } = how;
        let partition = self.pipeline.partitioning.key(date);
        if source_version.is_some() {
            // A pinned version that cannot be read is bad input: refuse it before the
            // claim, so that the partition's state is left as it was.
            inspect_partition(&self.session, &self.pipeline, date, source_version).await?;
        }
        // The source files of a partition never processed are read while the claim is
        // made: reading them needs no claim, and the run then finds them in memory.
        // (One processed before may be updated from its appended files alone.)
        let row = match seen {
            _ if !latefill_executor::reads_ahead(&self.pipeline) => None,
            Some(seen) => Some(seen.cloned()),
            None => self.state.recent_row(&partition),
        };
        let _ahead = match (source_version, row) {
            (None, Some(row)) if never_processed(row.as_ref()) => {
                latefill_executor::read_ahead(&self.session, &self.pipeline, &[date])
                    .await
                    .pop()
                    .flatten()
            }
            _ => None,
        };
        let previous = match seen {
            Some(seen) => {
                self.state
                    .claim_if_unchanged(&partition, &self.run_id, seen)
                    .await?;
                seen.cloned()
            }
            None => self.state.claim_one(&partition, &self.run_id).await?,
        };
        if let Some(control) = control {
            control.hold(&partition);
        }
        failpoint("after-claim");
        let report = self
            .run_claimed(
                date,
                previous.as_ref(),
                source_version,
                allow_empty,
                Beside {
                    kept,
                    ..Beside::default()
                },
            )
            .await;
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                // run_claimed recorded the failure (or the lease expires).
                if let Some(control) = control {
                    control.let_go(&partition);
                }
                return Err(e);
            }
        };
        let completion = self.completion(&report);
        let (completed, ()) = tokio::join!(
            self.state
                .complete_with_cursor(&completion, &self.run_id, cursor.map(str::to_owned)),
            self.session.checkpoints_written(),
        );
        completed?;
        if let Some(control) = control {
            control.let_go(&partition);
        }
        failpoint("after-complete");
        Ok(report)
    }

    /// Processes a partition this run has claimed, up to and including the target
    /// commit; its completion is the caller's to record (at once, or in a batch). A
    /// claim taken over from a crashed run whose target commit landed is not redone:
    /// the commit is recognised by its `txn` and reported as recovered. A failure is
    /// recorded in the state table before it is returned.
    pub(crate) async fn run_claimed(
        &self,
        date: PartitionDate,
        previous: Option<&PartitionState>,
        source_version: Option<TableVersion>,
        allow_empty: bool,
        beside: Beside,
    ) -> Result<RunReport> {
        let Beside {
            target_partitions,
            kept,
        } = beside;
        let started = std::time::Instant::now();
        let started_at = Utc::now();
        let partition = self.pipeline.partitioning.key(date);
        if previous.is_some_and(|p| p.status == Status::Processing) && source_version.is_none() {
            let info = inspect_partition(&self.session, &self.pipeline, date, None).await?;
            if let Some((target_version, Some(txn))) =
                target_txn_version(&self.session, &self.pipeline, &partition).await?
                && info.source_version == txn
            {
                // The commit that landed was made by this pipeline's transform unless
                // the SQL was edited between the crash and now.
                return Ok(RunReport {
                    partition,
                    period: date.to_string(),
                    source_version: txn,
                    strategy: None,
                    strategy_reason: None,
                    files_read: 0,
                    rows_read: 0,
                    bytes_read: 0,
                    memory_peak: None,
                    audits: Vec::new(),
                    rows_written: 0,
                    target_version,
                    fingerprint: info.fingerprint,
                    transform: self.pipeline.transform_version(),
                    recovered: true,
                    started_at,
                    finished_at: Utc::now(),
                    duration_ms: started.elapsed().as_millis() as u64,
                });
            }
        }

        let processed = previous.and_then(detect::processed_of);
        let mut run = run_partition(&self.pipeline, date)
            .with_source_version(source_version)
            .with_processed(processed)
            .with_allow_empty(allow_empty)
            .with_target_partitions(target_partitions)
            .with_checkpoint_in_background(true)
            .with_session(self.session.clone());
        run = match kept {
            Kept::Neither => run,
            Kept::Source(since) => run.with_source_current_since(since),
            Kept::Tables(since) => run.with_tables_current_since(since),
        };
        let run = run.await;
        match run {
            Ok(report) => {
                tracing::info!(
                    partition = %report.partition,
                    source_version = report.source_version.get(),
                    files = report.files_read,
                    rows_read = report.rows_read,
                    rows_written = report.rows_written,
                    ms = report.duration_ms,
                    "processed"
                );
                failpoint("after-commit");
                Ok(report)
            }
            Err(e) => {
                // The run's own error is the one to report; a failed record of it is
                // logged, and the claim then expires with its lease.
                if let Err(fail) = self
                    .state
                    .fail(&partition, &self.run_id, &e.to_string())
                    .await
                {
                    tracing::warn!(%partition, error = %fail, "could not record the failure");
                }
                Err(e.into())
            }
        }
    }

    pub(crate) async fn run_date_with(
        &self,
        date: PartitionDate,
        options: RunDateOptions,
    ) -> Result<RunOutcome> {
        // The run of `date` reads the source and the target after the detection and
        // the claim: they are loaded meanwhile, and the run reads them as loaded (as
        // of when the command began), not again after its claim.
        let source_too = options.source_version.is_none();
        let began = std::time::Instant::now();
        let pack = self.log_pack();
        // The loads start first, so that the checks before the claim wait for them
        // rather than load the tables a second time.
        let ((), outcome) = tokio::join!(
            latefill_executor::prefetch(&self.session, &self.pipeline, source_too),
            self.detect_then_run(date, options, began),
        );
        Self::leave_log_pack(pack);
        outcome
    }

    /// On a machine that never ran the pipeline, the log files the last such run read
    /// come in one read beside the state table, while the logs are listed
    /// ([`LogPack`]): started here, before the tables are opened.
    pub(crate) fn log_pack(&self) -> Option<LogPack> {
        let pack = LogPack::of(
            &self.pipeline.state,
            &self.pipeline.state_storage,
            &self.pipeline.name,
        )?;
        pack.prefetch();
        Some(pack)
    }

    /// Leaves the log files this process read as the pack for the next new machine,
    /// in the background ([`latefill::settle`](crate::settle) awaits it).
    pub(crate) fn leave_log_pack(pack: Option<LogPack>) {
        if let Some(pack) = pack {
            latefill_core::background::spawn(pack.write());
        }
    }

    async fn detect_then_run(
        &self,
        date: PartitionDate,
        options: RunDateOptions,
        began: std::time::Instant,
    ) -> Result<RunOutcome> {
        // Detect first, committing nothing: the cursor it moves to is saved in the
        // same commit as the completion of `date`. A replaced source must first have
        // its versions forgotten, so then the cursor is saved on its own, after.
        // Meanwhile, whatever the run would be refused for without reading a row is
        // checked, so that it is refused before the claim, with nothing written.
        let (changes, checked) = tokio::join!(
            self.read_changes(options.source_version.is_none().then_some(began)),
            latefill_executor::preflight(&self.session, &self.pipeline, options.source_version)
        );
        checked?;
        let (changes, cursor) = changes?;
        let with_completion = match changes.replaced {
            None => Self::moved_cursor(&changes, cursor.as_ref()),
            Some(_) => None,
        };
        let how = How {
            source_version: options.source_version,
            allow_empty: options.allow_empty,
            seen: None,
            cursor: with_completion.as_deref(),
            control: options.control.as_deref(),
            // A pinned source version is read as pinned, whatever is kept.
            kept: Kept::Tables(began),
        };
        let run = self.process_with(date, how).await?;
        self.persist_changes(&changes, cursor.as_ref(), with_completion.as_deref())
            .await?;
        let detection = self
            .plan(Some(date), options.lookback_days, changes, true)
            .await?;
        let mut outcome = RunOutcome {
            run,
            detection: detection.detection,
            late: detection.late.clone(),
            backfilled: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
            backfill_config: None,
        };
        match &options.backfill {
            LateHandling::ReportOnly => {
                self.choose_strategies(&mut outcome.late, &detection.state)
                    .await?;
            }
            LateHandling::PlanFile(path) => {
                let control = options.control.clone().unwrap_or_default();
                match self.hand_out(&detection.late, path, &control).await? {
                    Some(_) => outcome.backfill_config = Some(path.clone()),
                    None => outcome
                        .skipped
                        .extend(detection.late.iter().map(|l| Skipped {
                            partition: l.partition.clone(),
                            reason: "not handed out: the run was interrupted".into(),
                        })),
                }
            }
            LateHandling::InProcess => {
                let mut planned = Vec::new();
                for late in &detection.late {
                    let seen = detection.state.get(late.partition.as_str()).cloned();
                    planned.push((late.partition.date(), seen));
                }
                // One state commit claims them all and one records them.
                let control = options.control.clone().unwrap_or_default();
                if control.is_stopped() {
                    for (day, _) in planned.drain(..) {
                        outcome.skipped.push(Skipped {
                            partition: self.pipeline.partitioning.key(day),
                            reason: "not started: the run was interrupted".into(),
                        });
                    }
                }
                let batching = batch::Batching {
                    size: planned.len().max(1),
                    ..Default::default()
                };
                let emit = |event: BackfillEvent| {
                    control.track(&event);
                    event
                };
                // They read the tables as the day's run did (the source as loaded when
                // the command began), unless the day's run pinned a source version.
                let kept = match options.source_version {
                    None => Kept::Tables(began),
                    Some(_) => Kept::Neither,
                };
                let as_planned = batch::AsPlanned { kept, cursor: None };
                let events = batch::process_batched(
                    self,
                    planned,
                    1,
                    batching,
                    &control.stop,
                    &emit,
                    as_planned,
                )
                .await;
                for event in events {
                    match event {
                        BackfillEvent::Processed(report) => outcome.backfilled.push(report),
                        BackfillEvent::Skipped(s) => outcome.skipped.push(s),
                        BackfillEvent::Failed(f) => outcome.failed.push(f),
                        _ => {}
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Rebuilds the state table from the target's Delta application transactions:
    /// every target partition whose commit carried this pipeline's `txn` is recorded
    /// as processed at that source version. Returns how many rows were restored.
    pub async fn rebuild_state(&self) -> Result<usize> {
        let processed = latefill_executor::processed_partitions(&self.pipeline).await?;
        Ok(self.state.restore(&processed).await?)
    }
}

/// Whether a partition whose state row is `row` was never processed: its run reads
/// all its source files (one processed may be updated from its appended files alone).
pub(crate) fn never_processed(row: Option<&PartitionState>) -> bool {
    row.is_none_or(|r| r.source_version.is_none())
}
