//! Backfilling a range of dates, N partitions at a time.
//!
//! ```text
//!  plan (state + detector) ──► [D1, D2, ..., Dk] ──► N at a time: claim ─ run ─ complete
//!                                                      └─ claimed elsewhere: skipped
//! ```
//!
//! State transitions are batched: one commit claims the next [`Batching::size`]
//! partitions and records the completions of those processed since the last one, so
//! that a backfill makes about one state commit per batch rather than two per
//! partition. Crash safety is unchanged: a process killed after a partition's target
//! commit and before its completion was recorded leaves the partition claimed, and
//! the run that takes the claim over after its lease recognises the target commit by
//! its `txn` and records it without rewriting it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use latefill_core::{PartitionDate, PartitionKey};
use latefill_executor::RunReport;
use latefill_state::{PartitionState, Status};
use serde::Serialize;

use crate::engine::batch::{AsPlanned, process_batched};
pub use crate::engine::batch::{BackfillEvent, Batching};
use crate::engine::{Detection, Engine, Kept, Result, RunControl, Skipped};
use crate::plan::is_stale;

/// Which dates of the range a backfill processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Dates with source data that are not up to date: never processed, failed,
    /// abandoned (expired lease), or late.
    #[default]
    Pending,
    /// Only late dates: processed, and changed in the source since.
    OnlyLate,
    /// Only stale dates: processed by another version of the transform (the SQL
    /// changed since).
    Stale,
    /// Every date with source data, up to date or not.
    All,
}

/// A partition a backfill would process, and how (`backfill --dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRun {
    /// The partition.
    pub partition: PartitionKey,
    /// Its period alone, as `--date` takes it.
    pub period: String,
    /// Why it is planned: `never processed`, `failed`, `late`, `stale`, ...
    pub why: &'static str,
    /// How its run would bring it up to date, why, and what each strategy reads.
    pub strategy: latefill_executor::Choice,
}

/// What a backfill did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillReport {
    /// The partitions planned, in order.
    pub planned: Vec<PartitionKey>,
    /// The partitions processed, in the order they finished.
    pub processed: Vec<RunReport>,
    /// Partitions another run held, or not started because of a stop.
    pub skipped: Vec<Skipped>,
    /// Partitions that failed.
    pub failed: Vec<Skipped>,
    /// Whether a stop was requested before the end.
    pub interrupted: bool,
    /// Wall time.
    pub duration_ms: u64,
}

type Listener = Arc<dyn Fn(&BackfillEvent) + Send + Sync>;

/// A backfill of a date range; build it with [`Engine::backfill`] and await it.
///
/// ```no_run
/// # async fn example(engine: latefill::Engine) -> latefill::engine::Result<()> {
/// use latefill::backfill::Selection;
/// use latefill::PartitionDate;
///
/// let report = engine
///     .backfill(PartitionDate::parse("2024-01-01")?, PartitionDate::parse("2024-01-31")?)
///     .with_concurrency(2)
///     .with_selection(Selection::OnlyLate)
///     .await?;
/// println!("{} partitions reprocessed", report.processed.len());
/// # Ok(())
/// # }
/// ```
#[must_use = "a BackfillRange does nothing until it is awaited"]
pub struct BackfillRange {
    engine: Engine,
    from: PartitionDate,
    to: PartitionDate,
    concurrency: usize,
    selection: Selection,
    control: Arc<RunControl>,
    listener: Option<Listener>,
    batching: Batching,
}

impl std::fmt::Debug for BackfillRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackfillRange")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("concurrency", &self.concurrency)
            .field("selection", &self.selection)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A backfill of the dates `from..=to`.
    pub fn backfill(&self, from: PartitionDate, to: PartitionDate) -> BackfillRange {
        BackfillRange {
            engine: self.clone(),
            from,
            to,
            concurrency: 1,
            selection: Selection::default(),
            control: Arc::default(),
            listener: None,
            batching: Batching::default(),
        }
    }
}

impl BackfillRange {
    /// How many partitions are processed at once (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How state transitions are batched ([`Batching::default`]: 8 at a time).
    pub fn with_batching(mut self, batching: Batching) -> Self {
        self.batching = batching;
        self
    }

    /// Which dates to process.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Stops the backfill from starting new partitions once [`RunControl::stop`] is
    /// called (those running finish), and keeps [`RunControl::held`] up to date: the
    /// claims to give back if the caller abandons the backfill.
    pub fn with_control(mut self, control: Arc<RunControl>) -> Self {
        self.control = control;
        self
    }

    /// Called with each event as it happens (progress bars, JSON lines).
    pub fn with_listener(
        mut self,
        listener: impl Fn(&BackfillEvent) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The partitions this backfill would process, in date order, each with the state
    /// row it was planned from.
    pub async fn plan(&self) -> Result<Vec<(PartitionDate, Option<PartitionState>)>> {
        Ok(self
            .plan_with(true)
            .await?
            .into_iter()
            .map(|(date, row, _)| (date, row))
            .collect())
    }

    /// What this backfill would do, committing nothing: each partition it would
    /// process, in date order, why, and how a run would bring it up to date
    /// (`backfill --dry-run`).
    pub async fn dry_run(&self) -> Result<Vec<PlannedRun>> {
        latefill_executor::check_locations(self.engine.pipeline())?;
        let mut planned = Vec::new();
        for (date, row, late) in self.plan_with(false).await? {
            let pipeline = self.engine.pipeline();
            let processed = row.as_ref().and_then(crate::engine::processed_of);
            let strategy = latefill_executor::choose_strategy(
                self.engine.session(),
                pipeline,
                date,
                processed.as_ref(),
            )
            .await?;
            let why = match &row {
                None => "never processed",
                Some(r) if r.status == Status::Failed => "failed",
                Some(r) if r.status == Status::Processing => "abandoned (its lease expired)",
                Some(_) if late => "late",
                Some(r) if is_stale(r, &pipeline.transform_version()) => "stale",
                Some(_) => "up to date (--all)",
            };
            planned.push(PlannedRun {
                partition: pipeline.partitioning.key(date),
                period: date.to_string(),
                why,
                strategy,
            });
        }
        Ok(planned)
    }

    /// [`BackfillRange::plan`], each partition with whether it is late; with
    /// `persist`, the detection saves the detector's cursor.
    async fn plan_with(
        &self,
        persist: bool,
    ) -> Result<Vec<(PartitionDate, Option<PartitionState>, bool)>> {
        let detection = self
            .engine
            .detect_with(Some(self.day_after()), None, persist)
            .await?;
        Ok(self.select(&detection))
    }

    /// The day after the range: a detection before it covers the range.
    fn day_after(&self) -> PartitionDate {
        self.to
            .date()
            .succ_opt()
            .map(PartitionDate::from)
            .unwrap_or(self.to)
    }

    /// The partitions of the range `detection` says this backfill processes, in date
    /// order, each with its row and whether it is late.
    fn select(&self, detection: &Detection) -> Vec<(PartitionDate, Option<PartitionState>, bool)> {
        let engine = &self.engine;
        let state = &detection.state;
        let now = engine.state().now();
        let transform = engine.pipeline().transform_version();
        let late: std::collections::BTreeSet<&PartitionKey> =
            detection.late.iter().map(|l| &l.partition).collect();
        let mut dates = Vec::new();
        for change in detection.changes() {
            let date = change.partition.date();
            if date < self.from || date > self.to {
                continue;
            }
            let row = state.get(&change.partition);
            let pick = match self.selection {
                Selection::All => true,
                Selection::OnlyLate => late.contains(&change.partition),
                Selection::Stale => {
                    row.is_some_and(|r| !r.is_leased(now) && is_stale(r, &transform))
                }
                Selection::Pending => match row {
                    None => true,
                    Some(r) if r.is_leased(now) => false,
                    Some(r) => r.status != Status::Processed || late.contains(&change.partition),
                },
            };
            if pick {
                dates.push((date, row.cloned(), late.contains(&change.partition)));
            }
        }
        dates.sort_by_key(|(d, _, _)| *d);
        dates
    }

    async fn execute(self) -> Result<BackfillReport> {
        // The partitions read the source and the target after the plan and the first
        // claim: they are loaded meanwhile (for nothing when there is nothing to do).
        // The plan and every partition read the source as loaded then, at the version
        // the backfill began with: commits that land later are the next run's changes.
        let pipeline = self.engine.pipeline().clone();
        let session = self.engine.session().clone();
        let began = Instant::now();
        let pack = self.engine.log_pack();
        // The loads start first, so that the checks before the plan wait for them.
        let ((), report) = tokio::join!(
            latefill_executor::prefetch(&session, &pipeline, true),
            self.plan_then_process(began),
        );
        Engine::leave_log_pack(pack);
        report
    }

    async fn plan_then_process(self, began: Instant) -> Result<BackfillReport> {
        let started = Instant::now();
        let emit = |event: BackfillEvent| {
            self.control.track(&event);
            if let Some(l) = &self.listener {
                l(&event);
            }
            event
        };
        // Refused before the plan saves the detector's cursor and before the first
        // claim, with nothing written, for what the transform's plan alone shows; the
        // state and the source's log are read meanwhile.
        let check = async {
            latefill_executor::preflight(self.engine.session(), self.engine.pipeline(), None)
                .await
                .map_err(Into::into)
        };
        // The cursor the detection moved to is saved with the first claim.
        let (detection, cursor) = self
            .engine
            .detect_checked(Some(self.day_after()), None, check, began)
            .await?;
        let dates: Vec<(PartitionDate, Option<PartitionState>)> = self
            .select(&detection)
            .into_iter()
            .map(|(date, row, _)| (date, row))
            .collect();
        let planned: Vec<PartitionKey> = dates
            .iter()
            .map(|(d, _)| self.engine.pipeline().partitioning.key(*d))
            .collect();
        emit(BackfillEvent::Planned {
            partitions: planned.clone(),
        });

        let events = process_batched(
            &self.engine,
            dates,
            self.concurrency,
            self.batching,
            self.control.stop_flag(),
            &emit,
            AsPlanned {
                kept: Kept::Source(began),
                cursor,
            },
        )
        .await;

        let mut report = BackfillReport {
            planned,
            interrupted: self.control.is_stopped(),
            ..BackfillReport::default()
        };
        for event in events {
            match event {
                BackfillEvent::Processed(r) => report.processed.push(r),
                BackfillEvent::Skipped(s) => report.skipped.push(s),
                BackfillEvent::Failed(f) => report.failed.push(f),
                _ => {}
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

impl IntoFuture for BackfillRange {
    type Output = Result<BackfillReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}
