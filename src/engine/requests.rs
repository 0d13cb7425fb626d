//! What an [`Engine`] is asked to do, as builders that are awaited: a date with what
//! is late before it ([`RunDate`]), one partition alone ([`Process`]), a detection
//! ([`Detect`]); [`Engine::backfill`](crate::backfill) is the fourth.
//!
//! ```no_run
//! # async fn example(engine: latefill::Engine) -> latefill::engine::Result<()> {
//! use latefill::PartitionDate;
//! use latefill::engine::LateHandling;
//!
//! let date = PartitionDate::parse("2024-01-08")?;
//! let outcome = engine
//!     .run_date(date)
//!     .with_lookback(30)
//!     .with_late(LateHandling::ReportOnly)
//!     .await?;
//! let report = engine.process(date).with_source_version(12).await?;
//! let detection = engine.detect(date).with_lookback(30).await?;
//! # Ok(())
//! # }
//! ```

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use latefill_core::{PartitionDate, TableVersion};
use latefill_executor::RunReport;

use super::{Detection, Engine, LateHandling, Result, RunControl, RunDateOptions, RunOutcome};

/// A boxed future of an engine's request.
type Request<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

impl Engine {
    /// Processes `date`, then finds the late partitions before it and reprocesses them
    /// (or reports them, or hands them out), each claimed, processed at its own
    /// pinned version and completed. Set the options on the [`RunDate`], then await it.
    pub fn run_date(&self, date: PartitionDate) -> RunDate {
        RunDate {
            engine: self.clone(),
            date,
            options: RunDateOptions::default(),
        }
    }

    /// Claims `date`, processes it at its pinned version and records the outcome,
    /// without looking for late partitions.
    ///
    /// When the previous claim of the partition never completed (its process died) and
    /// the target's `txn` shows that its commit landed at the version this run would
    /// pin, nothing is written again: the state is completed from the target's log.
    pub fn process(&self, date: PartitionDate) -> Process {
        Process {
            engine: self.clone(),
            date,
            source_version: None,
            allow_empty: false,
        }
    }

    /// Detects the late partitions before `date`. Read-only: it commits nothing, not
    /// even the detector's cursor (the next run saves it).
    pub fn detect(&self, date: PartitionDate) -> Detect {
        Detect {
            engine: self.clone(),
            date,
            lookback_days: None,
        }
    }
}

/// A run of a date and of what is late before it; build it with [`Engine::run_date`]
/// and await it.
#[derive(Debug)]
#[must_use = "a RunDate does nothing until it is awaited"]
pub struct RunDate {
    engine: Engine,
    date: PartitionDate,
    options: RunDateOptions,
}

impl RunDate {
    /// Reads the date's source at this version instead of the latest.
    pub fn with_source_version(mut self, version: impl Into<TableVersion>) -> Self {
        self.options.source_version = Some(version.into());
        self
    }

    /// Writes an empty partition when the date has no data, instead of failing.
    pub fn with_allow_empty(mut self, allow: bool) -> Self {
        self.options.allow_empty = allow;
        self
    }

    /// What to do with the late partitions ([`LateHandling::InProcess`] by default).
    pub fn with_late(mut self, handling: LateHandling) -> Self {
        self.options.backfill = handling;
        self
    }

    /// Only considers late partitions at most `days` before the date.
    pub fn with_lookback(mut self, days: u32) -> Self {
        self.options.lookback_days = Some(days);
        self
    }

    /// [`RunDate::with_lookback`], or every partition before the date for `None`.
    pub fn with_lookback_days(mut self, days: Option<u32>) -> Self {
        self.options.lookback_days = days;
        self
    }

    /// Stops the run between partitions when `control` is stopped, and keeps the
    /// claims it holds in `control` (for a caller that handles signals).
    pub fn with_control(mut self, control: Arc<RunControl>) -> Self {
        self.options.control = Some(control);
        self
    }
}

impl IntoFuture for RunDate {
    type Output = Result<RunOutcome>;
    type IntoFuture = Request<RunOutcome>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.engine.run_date_with(self.date, self.options).await })
    }
}

/// One partition, processed alone; build it with [`Engine::process`] and await it.
#[derive(Debug)]
#[must_use = "a Process does nothing until it is awaited"]
pub struct Process {
    engine: Engine,
    date: PartitionDate,
    source_version: Option<TableVersion>,
    allow_empty: bool,
}

impl Process {
    /// Reads the source at this version instead of the latest.
    pub fn with_source_version(mut self, version: impl Into<TableVersion>) -> Self {
        self.source_version = Some(version.into());
        self
    }

    /// Writes an empty partition when the date has no data, instead of failing.
    pub fn with_allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }
}

impl IntoFuture for Process {
    type Output = Result<RunReport>;
    type IntoFuture = Request<RunReport>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.engine
                .process_now(self.date, self.source_version, self.allow_empty)
                .await
        })
    }
}

/// A detection of the late partitions before a date; build it with
/// [`Engine::detect`] and await it.
#[derive(Debug)]
#[must_use = "a Detect does nothing until it is awaited"]
pub struct Detect {
    engine: Engine,
    date: PartitionDate,
    lookback_days: Option<u32>,
}

impl Detect {
    /// Only considers partitions at most `days` before the date.
    pub fn with_lookback(mut self, days: u32) -> Self {
        self.lookback_days = Some(days);
        self
    }

    /// [`Detect::with_lookback`], or every partition before the date for `None`.
    pub fn with_lookback_days(mut self, days: Option<u32>) -> Self {
        self.lookback_days = days;
        self
    }
}

impl IntoFuture for Detect {
    type Output = Result<Detection>;
    type IntoFuture = Request<Detection>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut detection = self
                .engine
                .detect_read_only(Some(self.date), self.lookback_days)
                .await?;
            self.engine
                .choose_strategies(&mut detection.late, &detection.state)
                .await?;
            Ok(detection)
        })
    }
}
