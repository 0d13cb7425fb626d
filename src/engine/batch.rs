//! Processing planned partitions N at a time, with batched state transitions: one
//! commit claims the next [`Batching::size`] partitions and records the completions
//! of those processed since the last one. Both a backfill and a run's late partitions
//! go through here.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latefill_core::{PartitionDate, PartitionKey};
use latefill_executor::{RunReport, failpoint};
use latefill_state::{Batch, BatchOutcome, PartitionState, Planned};
use serde::Serialize;

use super::{Beside, Engine, Kept, Skipped};

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

/// What the plan leaves to the partitions it planned.
#[derive(Debug, Default)]
pub(crate) struct AsPlanned {
    /// The tables they read as the plan loaded them.
    pub(crate) kept: Kept,
    /// The detector's cursor, saved with the first state commit (by itself when there
    /// is none).
    pub(crate) cursor: Option<String>,
}

/// A partition this run claimed and has not started.
struct Claimed {
    date: PartitionDate,
    /// Its row when planned (what a release restores).
    seen: Option<PartitionState>,
    /// When its lease started, by the state table's clock.
    claimed_at: chrono::DateTime<chrono::Utc>,
    /// Its source files, read from the claim on (on an object store): its run finds
    /// them in memory instead of waiting for them.
    ahead: Option<latefill_core::storage::ReadAhead>,
}

/// Processes `planned` partitions, `concurrency` at a time, with batched state
/// transitions, as planned ([`AsPlanned`]); returns every partition's last event.
pub(crate) async fn process_batched(
    engine: &Engine,
    planned: Vec<(PartitionDate, Option<PartitionState>)>,
    concurrency: usize,
    batching: Batching,
    stop: &AtomicBool,
    emit: &(dyn Fn(BackfillEvent) -> BackfillEvent + Sync),
    as_planned: AsPlanned,
) -> Vec<BackfillEvent> {
    let AsPlanned { kept, cursor } = as_planned;
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
        cursor,
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
                && !batcher.renew(&partition).await
            {
                continue;
            }
            emit(BackfillEvent::Started {
                partition: partition.clone(),
            });
            let engine = engine.clone();
            running.spawn(async move {
                let beside = Beside {
                    target_partitions,
                    kept,
                };
                let report = engine
                    .run_claimed(next.date, next.seen.as_ref(), None, true, beside)
                    .await;
                drop(next.ahead);
                (partition, report)
            });
        }
        // Once fewer claimed partitions wait than run at once, claim the next batch
        // (with the completions so far), so that it has landed before they have all
        // started: at `--concurrency 8` and batches of 8, waiting until all had
        // started made the partitions wait for each claim.
        if claiming.is_none()
            && ready.len() < concurrency
            && !queue.is_empty()
            && !stop.load(Ordering::SeqCst)
        {
            // More candidates than the batch claims: those another worker took since
            // the plan are refused (and skipped), and the batch is filled from the
            // rest; those after it go back to the queue.
            let candidates = (size * LOOKAHEAD).min(queue.len());
            let claim: Vec<_> = queue.drain(..candidates).collect();
            claiming = Some(batcher.claim(std::mem::take(&mut done), claim, size));
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
                let Recorded { claimed, unreached } = batcher.record(recorded, batch, result);
                for (date, seen) in claim.iter().rev() {
                    if unreached.contains(&engine.pipeline().partitioning.key(*date)) {
                        queue.push_front((*date, seen.clone()));
                    }
                }
                // The claim's partitions that the state table granted, in order.
                let granted: Vec<(PartitionKey, PartitionDate, Option<PartitionState>)> = claim
                    .into_iter()
                    .map(|(date, seen)| (engine.pipeline().partitioning.key(date), date, seen))
                    .filter(|(key, _, _)| claimed.contains(key))
                    .collect();
                if !granted.is_empty() {
                    emit(BackfillEvent::Claimed {
                        partitions: granted.iter().map(|(key, _, _)| key.clone()).collect(),
                    });
                    failpoint("after-claim");
                }
                // The source files of those never processed are read from now on.
                let reads_ahead = latefill_executor::reads_ahead(engine.pipeline());
                let fresh: Vec<PartitionDate> = granted
                    .iter()
                    .filter(|(_, _, seen)| reads_ahead && super::never_processed(seen.as_ref()))
                    .map(|(_, date, _)| *date)
                    .collect();
                let mut ahead: std::collections::HashMap<PartitionDate, _> = fresh
                    .iter()
                    .copied()
                    .zip(
                        latefill_executor::read_ahead(engine.session(), engine.pipeline(), &fresh)
                            .await,
                    )
                    .collect();
                for (_, date, seen) in granted {
                    let ahead = ahead.remove(&date).flatten();
                    ready.push_back(Claimed {
                        date,
                        seen,
                        claimed_at: engine.state().now(),
                        ahead,
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
        // Nor when the partitions running are the last: the last commit records them
        // with the others', at most `max_delay` later. Committed then, it held the
        // last runs' completions for a commit more, one after the other.
        let claim_to_come =
            claiming.is_some() || (!queue.is_empty() && !stop.load(Ordering::SeqCst));
        let last_running = queue.is_empty() && ready.is_empty() && !running.is_empty();
        if done.len() >= size && !claim_to_come && !last_running {
            batcher.commit(std::mem::take(&mut done), &[], &[]).await;
            first_done = None;
        }
    }

    // Record what is done and give back what was claimed and not started (a stop).
    let release: Vec<Planned> = ready
        .iter()
        .map(|c| Planned {
            partition: engine.pipeline().partitioning.key(c.date),
            seen: c.seen.clone(),
        })
        .collect();
    // The checkpoints the runs left to write in the background land meanwhile.
    let last_commit = async {
        if !done.is_empty() || !release.is_empty() || batcher.cursor.is_some() {
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

/// How many candidates a claim lists for each partition it claims at most: enough for
/// a batch to stay full where other workers took most of what this one planned (a
/// fleet on overlapping ranges), few enough that a claim's decision stays cheap.
const LOOKAHEAD: usize = 8;

/// What a batch commit did with the partitions it was to claim ([`Batcher::record`]).
#[derive(Default)]
struct Recorded {
    /// Claimed by this run.
    claimed: Vec<PartitionKey>,
    /// Neither claimed nor refused: the batch was full before them.
    unreached: Vec<PartitionKey>,
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
    /// The detector's cursor, saved by the next batch. One that fails is not saved:
    /// the next detection reads the same commits again.
    cursor: Option<String>,
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
    ) -> Vec<PartitionKey> {
        let batch = self.batch(&done, release, claim);
        if batch.is_empty() {
            return Vec::new();
        }
        let result = self
            .engine
            .state()
            .commit_batch(self.engine.run_id(), &batch)
            .await;
        self.record(done, batch, result).claimed
    }

    /// The commit of [`Batcher::commit`] recording `done` and claiming `claim`, as a
    /// future of its own, to run beside the partitions; [`Batcher::record`] its result.
    /// Of `claim`, at most `most` are claimed ([`Batch::claim_at_most`]).
    fn claim(
        &mut self,
        done: Vec<RunReport>,
        claim: Vec<(PartitionDate, Option<PartitionState>)>,
        most: usize,
    ) -> Claiming {
        let batch = Batch {
            claim_at_most: Some(most),
            ..self.batch(&done, &[], &claim)
        };
        let engine = self.engine.clone();
        Box::pin(async move {
            let result = engine.state().commit_batch(engine.run_id(), &batch).await;
            (done, claim, batch, result)
        })
    }

    /// The batch recording `done`, releasing `release` and claiming `claim`.
    fn batch(
        &mut self,
        done: &[RunReport],
        release: &[Planned],
        claim: &[(PartitionDate, Option<PartitionState>)],
    ) -> Batch {
        let pipeline = self.engine.pipeline();
        Batch {
            complete: done.iter().map(|r| self.engine.completion(r)).collect(),
            release: release.to_vec(),
            claim: claim
                .iter()
                .map(|(date, seen)| Planned {
                    partition: pipeline.partitioning.key(*date),
                    seen: seen.clone(),
                })
                .collect(),
            cursor: self.cursor.take(),
            ..Batch::default()
        }
    }

    /// Turns the outcome of `batch`, which recorded `done`, into events; returns the
    /// partitions it claimed and those it did not reach.
    fn record(
        &mut self,
        done: Vec<RunReport>,
        batch: Batch,
        result: latefill_state::Result<BatchOutcome>,
    ) -> Recorded {
        let emit = self.emit;
        match result {
            Ok(outcome) => {
                if !done.is_empty() {
                    failpoint("after-complete");
                }
                for report in done {
                    if outcome.completed.contains(&report.partition) {
                        self.events.push(emit(BackfillEvent::Processed(report)));
                    }
                }
                for refused in outcome.refused {
                    let Some(partition) = refused.partition().cloned() else {
                        tracing::warn!(error = %refused, "a refusal of no partition");
                        continue;
                    };
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
                Recorded {
                    claimed: outcome.claimed,
                    unreached: outcome.unreached,
                }
            }
            Err(e) => {
                let reason = format!("recording in the state table failed: {e}");
                // The partitions it was to claim fail as many as it was to claim; the
                // candidates after them go back to the queue, as if not reached.
                let mut claim = batch.claim.into_iter().map(|c| c.partition);
                let most = batch.claim_at_most.unwrap_or(usize::MAX);
                let partitions = batch
                    .complete
                    .into_iter()
                    .map(|c| c.partition)
                    .chain(claim.by_ref().take(most));
                for partition in partitions {
                    self.events.push(emit(BackfillEvent::Failed(Skipped {
                        partition,
                        reason: reason.clone(),
                    })));
                }
                Recorded {
                    claimed: Vec::new(),
                    unreached: claim.collect(),
                }
            }
        }
    }

    /// Renews this run's claim of `partition`; `false` (and an event) when the claim
    /// was lost.
    async fn renew(&mut self, partition: &PartitionKey) -> bool {
        let batch = Batch {
            renew: vec![partition.clone()],
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
            partition: partition.clone(),
            reason,
        })));
        false
    }
}
