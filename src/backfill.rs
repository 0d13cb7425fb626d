//! Backfilling a range of dates, N partitions at a time.
//!
//! ```text
//!  plan (state + detector) ──► [D1, D2, ..., Dk] ──► N at a time: claim ─ run ─ complete
//!                                                      └─ claimed elsewhere: skipped
//! ```

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use latefill_executor::{PartitionDate, RunReport};
use latefill_state::{PartitionState, Status};
use serde::Serialize;

use crate::engine::{Engine, Error, Result, Skipped};
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
        partitions: Vec<String>,
    },
    /// A partition was claimed and is being processed.
    Started {
        /// The partition.
        partition: String,
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
    pub planned: Vec<String>,
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
/// use latefill::executor::PartitionDate;
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
    stop: Arc<AtomicBool>,
    listener: Option<Listener>,
}

impl std::fmt::Debug for BackfillRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackfillRange")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("concurrency", &self.concurrency)
            .field("selection", &self.selection)
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
            stop: Arc::new(AtomicBool::new(false)),
            listener: None,
        }
    }
}

impl BackfillRange {
    /// How many partitions are processed at once (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Which dates to process.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// A flag that, once set, stops new partitions from starting; those running finish.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
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
        let detection = engine.detect_with(after, None, true).await?;
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
        let started = Instant::now();
        let emit = |event: BackfillEvent| {
            if let Some(l) = &self.listener {
                l(&event);
            }
            event
        };
        let dates = self.plan().await?;
        let planned: Vec<String> = dates
            .iter()
            .map(|(d, _)| self.engine.pipeline().partition_name(*d))
            .collect();
        emit(BackfillEvent::Planned {
            partitions: planned.clone(),
        });

        let engine = &self.engine;
        let stop = &self.stop;
        let emit = &emit;
        let events: Vec<BackfillEvent> = futures::stream::iter(dates)
            .map(|(date, seen)| async move {
                let partition = engine.pipeline().partition_name(date);
                if stop.load(Ordering::SeqCst) {
                    return emit(BackfillEvent::Skipped(Skipped {
                        partition,
                        reason: "not started: the backfill was interrupted".into(),
                    }));
                }
                emit(BackfillEvent::Started {
                    partition: partition.clone(),
                });
                // Claimed only if its state is still what the plan saw; a partition
                // whose rows were all deleted becomes empty.
                match engine.process_planned(date, seen.as_ref()).await {
                    Ok(report) => emit(BackfillEvent::Processed(report)),
                    Err(Error::State(
                        e @ (latefill_state::Error::Claimed { .. }
                        | latefill_state::Error::ChangedSincePlanned { .. }),
                    )) => emit(BackfillEvent::Skipped(Skipped {
                        partition,
                        reason: e.to_string(),
                    })),
                    Err(e) => emit(BackfillEvent::Failed(Skipped {
                        partition,
                        reason: e.to_string(),
                    })),
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;

        let mut report = BackfillReport {
            planned,
            interrupted: self.stop.load(Ordering::SeqCst),
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
