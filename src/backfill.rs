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

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latefill_core::{PartitionDate, PartitionKey};
use latefill_executor::RunReport;
use latefill_executor::failpoint;
use latefill_state::{Batch, BatchOutcome, PartitionState, Planned, Status};
use serde::Serialize;

use crate::engine::{Engine, Result, RunControl, Skipped, completion};
use crate::plan::{is_stale, partition_date};

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

/// What happened to one partition, as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BackfillEvent {
    /// The plan is made: `total` partitions.
    Planned {
        /// The partitions, in order.
        partitions: Vec<PartitionKey>,
    },
    /// Partitions were claimed by this run (a batch), to be processed next.
    Claimed {
        /// The partitions.
        partitions: Vec<PartitionKey>,
    },
    /// A claimed partition is being processed.
    Started {
        /// The partition.
        partition: PartitionKey,
    },
    /// A partition was processed.
    Processed(RunReport),
    /// A partition was claimed by another run, or not started after a stop.
    Skipped(Skipped),
    /// A partition failed.
    Failed(Skipped),
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

/// How a backfill batches its state transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// At most how many partitions one commit claims, and after how many processed
    /// partitions their completions are recorded (1: a commit per transition).
    pub size: usize,
    /// At most how long a processed partition waits for its completion to be
    /// recorded (its status says `processing` until then).
    pub max_delay: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            size: 8,
            max_delay: Duration::from_secs(2),
        }
    }
}

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
        let engine = &self.engine;
        let after = self
            .to
            .date()
            .succ_opt()
            .map(PartitionDate::from)
            .unwrap_or(self.to);
        let detection = engine.detect_with(Some(after), None, true).await?;
        let state = &detection.state;
        let now = engine.state().now();
        let transform = engine.pipeline().transform_version();
        let late: std::collections::BTreeSet<&str> = detection
            .late
            .iter()
            .map(|l| l.partition.as_str())
            .collect();
        let mut dates = Vec::new();
        for change in detection.changes() {
            let Some(date) = partition_date(engine.pipeline(), &change.partition) else {
                continue;
            };
            if date < self.from || date > self.to {
                continue;
            }
            let row = state.get(&change.partition);
            let pick = match self.selection {
                Selection::All => true,
                Selection::OnlyLate => late.contains(change.partition.as_str()),
                Selection::Stale => {
                    row.is_some_and(|r| !r.is_leased(now) && is_stale(r, &transform))
                }
                Selection::Pending => match row {
                    None => true,
                    Some(r) if r.is_leased(now) => false,
                    Some(r) => {
                        r.status != Status::Processed || late.contains(change.partition.as_str())
                    }
                },
            };
            if pick {
                dates.push((date, row.cloned()));
            }
        }
        dates.sort_by_key(|(d, _)| *d);
        Ok(dates)
    }

    async fn execute(self) -> Result<BackfillReport> {
        // The partitions read the source and the target after the plan and the first
        // claim: they are loaded meanwhile (for nothing when there is nothing to do).
        let pipeline = self.engine.pipeline().clone();
        let session = self.engine.session().clone();
        // The loads start first, so that the checks before the plan wait for them.
        let ((), report) = tokio::join!(
            latefill_executor::prefetch(&session, &pipeline, true),
            self.plan_then_process(),
        );
        report
    }

    async fn plan_then_process(self) -> Result<BackfillReport> {
        let started = Instant::now();
        let emit = |event: BackfillEvent| {
            self.control.track(&event);
            if let Some(l) = &self.listener {
                l(&event);
            }
            event
        };
        // Refused before the plan saves the detector's cursor and before the first
        // claim, with nothing written, for what the transform's plan alone shows.
        latefill_executor::preflight(self.engine.session(), self.engine.pipeline(), None).await?;
        let dates = self.plan().await?;
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

/// A partition this run claimed and has not started.
struct Claimed {
    date: PartitionDate,
    /// Its row when planned (what a release restores).
    seen: Option<PartitionState>,
    /// When its lease started, by the state table's clock.
    claimed_at: chrono::DateTime<chrono::Utc>,
}

/// Processes `planned` partitions, `concurrency` at a time, with batched state
/// transitions; returns every partition's last event.
pub(crate) async fn process_batched(
    engine: &Engine,
    planned: Vec<(PartitionDate, Option<PartitionState>)>,
    concurrency: usize,
    batching: Batching,
    stop: &AtomicBool,
    emit: &(dyn Fn(BackfillEvent) -> BackfillEvent + Sync),
) -> Vec<BackfillEvent> {
    let size = batching.size.max(1);
    // A claim older than half its lease is renewed before its partition starts, so
    // that no partition starts on a lease another run may take over meanwhile.
    let renew_after = engine.state().lease() / 2;
    // Partitions run side by side share the cores, each transform its part of them.
    let target_partitions = (concurrency > 1).then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / concurrency).max(1)
    });
    let mut batcher = Batcher {
        engine,
        emit,
        events: Vec::new(),
    };
    let mut queue: VecDeque<(PartitionDate, Option<PartitionState>)> = planned.into();
    let mut ready: VecDeque<Claimed> = VecDeque::new();
    let mut running = tokio::task::JoinSet::new();
    let mut done: Vec<RunReport> = Vec::new();
    let mut first_done: Option<Instant> = None;

    // The claim of the next batch, made while the partitions of the last one run: one
    // state commit at a time, so completions wait for it (it records them too).
    let mut claiming: Option<Claiming> = None;

    loop {
        // Start what can start.
        while running.len() < concurrency && !stop.load(Ordering::SeqCst) {
            let Some(next) = ready.pop_front() else {
                break;
            };
            let partition = engine.pipeline().partitioning.key(next.date);
            if engine.state().now() - next.claimed_at > renew_after
                && !batcher.renew(partition.as_str()).await
            {
                continue;
            }
            emit(BackfillEvent::Started {
                partition: partition.clone(),
            });
            let engine = engine.clone();
            running.spawn(async move {
                let report = engine
                    .run_claimed(next.date, next.seen.as_ref(), None, true, target_partitions)
                    .await;
                (partition, report)
            });
        }
        // Once every claimed partition has started, claim the next batch (with the
        // completions so far), so that it is ready when a partition finishes.
        if claiming.is_none()
            && ready.is_empty()
            && !queue.is_empty()
            && !stop.load(Ordering::SeqCst)
        {
            let claim: Vec<_> = queue.drain(..size.min(queue.len())).collect();
            claiming = Some(batcher.claim(std::mem::take(&mut done), claim));
            first_done = None;
        }
        if running.is_empty() && claiming.is_none() {
            break;
        }
        // Wait for a partition to finish, the claim to land, or the oldest completion
        // to be due.
        let due = first_done.map(|t| tokio::time::Instant::from_std(t + batching.max_delay));
        tokio::select! {
            joined = running.join_next(), if !running.is_empty() => {
                let (partition, result) = joined
                    .expect("running is not empty")
                    .expect("a partition's task panicked");
                match result {
                    Ok(report) => {
                        done.push(report);
                        first_done.get_or_insert_with(Instant::now);
                    }
                    Err(e) => {
                        batcher.events.push(emit(BackfillEvent::Failed(Skipped {
                            partition,
                            reason: e.to_string(),
                        })));
                    }
                }
            }
            landed = async { claiming.as_mut().expect("a claim is in flight").await }, if claiming.is_some() => {
                claiming = None;
                let (recorded, claim, batch, result) = landed;
                let claimed = batcher.record(recorded, batch, result);
                // The claim's partitions that the state table granted, in order.
                let granted: Vec<(PartitionKey, PartitionDate, Option<PartitionState>)> = claim
                    .into_iter()
                    .map(|(date, seen)| (engine.pipeline().partitioning.key(date), date, seen))
                    .filter(|(key, _, _)| claimed.iter().any(|c| key == c.as_str()))
                    .collect();
                if !granted.is_empty() {
                    emit(BackfillEvent::Claimed {
                        partitions: granted.iter().map(|(key, _, _)| key.clone()).collect(),
                    });
                    failpoint("after-claim");
                }
                for (_, date, seen) in granted {
                    ready.push_back(Claimed {
                        date,
                        seen,
                        claimed_at: engine.state().now(),
                    });
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() && claiming.is_none() => {
                batcher.commit(std::mem::take(&mut done), &[], &[]).await;
                first_done = None;
            }
        }
        // A full batch of completions is recorded now, unless a claim is in flight or
        // one is still to come: that commit records them (a claim is made once a batch
        // has started, so at most a batch and the running partitions wait for it).
        let claim_to_come =
            claiming.is_some() || (!queue.is_empty() && !stop.load(Ordering::SeqCst));
        if done.len() >= size && !claim_to_come {
            batcher.commit(std::mem::take(&mut done), &[], &[]).await;
            first_done = None;
        }
    }

    // Record what is done and give back what was claimed and not started (a stop).
    let release: Vec<Planned> = ready
        .iter()
        .map(|c| Planned {
            partition: engine.pipeline().partition_name(c.date),
            seen: c.seen.clone(),
        })
        .collect();
    // The checkpoints the runs left to write in the background land meanwhile.
    let last_commit = async {
        if !done.is_empty() || !release.is_empty() {
            batcher.commit(done, &release, &[]).await;
        }
    };
    tokio::join!(last_commit, engine.session().checkpoints_written());
    let dates = ready
        .iter()
        .map(|c| c.date)
        .chain(queue.into_iter().map(|(d, _)| d));
    for partition in dates.map(|d| engine.pipeline().partitioning.key(d)) {
        batcher.events.push(emit(BackfillEvent::Skipped(Skipped {
            partition,
            reason: "not started: the backfill was interrupted".into(),
        })));
    }
    batcher.events
}

/// A claim in flight: the completions it records, the partitions it claims, its
/// batch and what the state table made of it.
type Claiming = Pin<
    Box<
        dyn Future<
                Output = (
                    Vec<RunReport>,
                    Vec<(PartitionDate, Option<PartitionState>)>,
                    Batch,
                    latefill_state::Result<BatchOutcome>,
                ),
            > + Send,
    >,
>;

/// Commits batches of transitions and turns their outcomes into events.
struct Batcher<'a> {
    engine: &'a Engine,
    emit: &'a (dyn Fn(BackfillEvent) -> BackfillEvent + Sync),
    events: Vec<BackfillEvent>,
}

impl Batcher<'_> {
    /// Records `done`, releases `release` and claims `claim` in one commit; returns the
    /// partitions claimed. Each processed partition is reported once its completion
    /// is recorded; a commit that fails fails its partitions.
    async fn commit(
        &mut self,
        done: Vec<RunReport>,
        release: &[Planned],
        claim: &[(PartitionDate, Option<PartitionState>)],
    ) -> Vec<String> {
        let batch = self.batch(&done, release, claim);
        if batch.is_empty() {
            return Vec::new();
        }
        let result = self
            .engine
            .state()
            .commit_batch(self.engine.run_id(), &batch)
            .await;
        self.record(done, batch, result)
    }

    /// The commit of [`Batcher::commit`] recording `done` and claiming `claim`, as a
    /// future of its own, to run beside the partitions; [`Batcher::record`] its result.
    fn claim(
        &self,
        done: Vec<RunReport>,
        claim: Vec<(PartitionDate, Option<PartitionState>)>,
    ) -> Claiming {
        let batch = self.batch(&done, &[], &claim);
        let engine = self.engine.clone();
        Box::pin(async move {
            let result = engine.state().commit_batch(engine.run_id(), &batch).await;
            (done, claim, batch, result)
        })
    }

    /// The batch recording `done`, releasing `release` and claiming `claim`.
    fn batch(
        &self,
        done: &[RunReport],
        release: &[Planned],
        claim: &[(PartitionDate, Option<PartitionState>)],
    ) -> Batch {
        let pipeline = self.engine.pipeline();
        Batch {
            complete: done.iter().map(completion).collect(),
            release: release.to_vec(),
            claim: claim
                .iter()
                .map(|(date, seen)| Planned {
                    partition: pipeline.partition_name(*date),
                    seen: seen.clone(),
                })
                .collect(),
            ..Batch::default()
        }
    }

    /// Turns the outcome of `batch`, which recorded `done`, into events; returns the
    /// partitions it claimed.
    fn record(
        &mut self,
        done: Vec<RunReport>,
        batch: Batch,
        result: latefill_state::Result<BatchOutcome>,
    ) -> Vec<String> {
        let emit = self.emit;
        match result {
            Ok(outcome) => {
                if !done.is_empty() {
                    failpoint("after-complete");
                }
                for report in done {
                    if outcome
                        .completed
                        .iter()
                        .any(|p| report.partition == p.as_str())
                    {
                        self.events.push(emit(BackfillEvent::Processed(report)));
                    }
                }
                for refused in outcome.refused {
                    let partition = self.key(refused.partition().unwrap_or_default());
                    let event = match refused {
                        // Processed, but another run took the claim over meanwhile.
                        latefill_state::Error::LeaseLost { .. } => BackfillEvent::Failed,
                        _ => BackfillEvent::Skipped,
                    };
                    self.events.push(emit(event(Skipped {
                        partition,
                        reason: refused.to_string(),
                    })));
                }
                outcome.claimed
            }
            Err(e) => {
                let reason = format!("recording in the state table failed: {e}");
                let partitions = batch
                    .complete
                    .into_iter()
                    .map(|c| c.partition)
                    .chain(batch.claim.into_iter().map(|c| c.partition));
                for partition in partitions {
                    self.events.push(emit(BackfillEvent::Failed(Skipped {
                        partition: self.key(&partition),
                        reason: reason.clone(),
                    })));
                }
                Vec::new()
            }
        }
    }

    /// Renews this run's claim of `partition`; `false` (and an event) when the claim
    /// was lost.
    async fn renew(&mut self, partition: &str) -> bool {
        let batch = Batch {
            renew: vec![partition.to_owned()],
            ..Batch::default()
        };
        let result = self
            .engine
            .state()
            .commit_batch(self.engine.run_id(), &batch)
            .await;
        let reason = match result {
            Ok(outcome) => match outcome.refused.into_iter().next() {
                None => return true,
                Some(e) => e.to_string(),
            },
            Err(e) => format!("renewing the claim failed: {e}"),
        };
        self.events.push((self.emit)(BackfillEvent::Failed(Skipped {
            partition: self.key(partition),
            reason,
        })));
        false
    }

    /// The key of a partition this run named in the state table (the state table
    /// holds names; this run made each from a key of its pipeline).
    fn key(&self, name: &str) -> PartitionKey {
        self.engine
            .pipeline()
            .partitioning
            .parse_name(name)
            .expect("a partition name this run wrote")
    }
}
