//! `latefill demo`: the sample devices pipeline and its late-data story, end to end,
//! on local files.
//!
//! 1. Generate and run 2024-01-01 to 2024-01-07.
//! 2. Append late rows to 2024-01-02 and 2024-01-03.
//! 3. Run 2024-01-04: both are reported late and reprocessed; the target then equals
//!    a fresh full recomputation (checked against a scratch table).
//! 4. Append late rows to 2024-01-02 again: a detection for 2024-01-03 plans exactly
//!    `event_time=2024-01-02`.
//!
//! The state table is shown after each step.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use deltalake::arrow::util::pretty::pretty_format_batches;
use latefill_core::PartitionDate;
use latefill_datagen::{GenerateOptions, GenerateReport};
use latefill_executor::{Pipeline, RunReport, resolve_location, run_partition};
use serde::Serialize;

use crate::engine::{Engine, LateHandling, RunOutcome, StatusRow};
use crate::plan::LatePartition;

/// The file that marks a directory as made by the demo, so a re-run may replace it.
const MARKER: &str = ".latefill-demo";

/// Rows generated per day.
pub const DEMO_ROWS_PER_DAY: usize = 10_000;

/// Late rows appended to a past day.
pub const DEMO_LATE_ROWS: usize = 2_000;

/// The demo's days: 2024-01-01 to 2024-01-07.
pub fn demo_dates() -> Vec<PartitionDate> {
    let first = NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date");
    first.iter_days().take(7).map(PartitionDate::from).collect()
}

fn day(d: u32) -> PartitionDate {
    PartitionDate::from(NaiveDate::from_ymd_opt(2024, 1, d).expect("valid date"))
}

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The directory exists and was not made by the demo: it is left alone.
    #[error(
        "{} exists and was not made by `latefill demo`; remove it or pass another --dir",
        .0.display()
    )]
    DirectoryInUse(PathBuf),
    /// Preparing the directory failed.
    #[error("preparing {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Generating the sample data failed.
    #[error(transparent)]
    Generate(#[from] latefill_datagen::Error),
    /// Running the pipeline failed.
    #[error(transparent)]
    Run(#[from] crate::engine::Error),
    /// Comparing the target with a recomputation failed.
    #[error("comparing {table} with a recomputation: {reason}")]
    Compare {
        /// The table being read.
        table: String,
        /// Why.
        reason: String,
    },
}

impl DemoError {
    /// The class of this error, as `run` would give it.
    pub fn class(&self) -> latefill_core::ErrorClass {
        use latefill_core::ErrorClass;
        match self {
            DemoError::DirectoryInUse(_) => ErrorClass::Usage,
            DemoError::Io { .. } => ErrorClass::Storage,
            DemoError::Generate(latefill_datagen::Error::Delta { .. }) => ErrorClass::Storage,
            DemoError::Generate(_) => ErrorClass::Usage,
            DemoError::Run(e) => e.class(),
            // The demo's own check of its result failed: a bug.
            DemoError::Compare { .. } => ErrorClass::Internal,
        }
    }
}

impl From<latefill_executor::Error> for DemoError {
    fn from(e: latefill_executor::Error) -> Self {
        DemoError::Run(e.into())
    }
}

/// One step of the demo, as it happened; the binary prints them as they come.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DemoEvent {
    /// A day generated and run.
    Day {
        /// The day.
        date: String,
        /// Rows appended to the source for it.
        rows_generated: usize,
        /// The run of that day.
        run: Box<RunReport>,
    },
    /// Late rows appended to a past day.
    LateData {
        /// The day.
        date: String,
        /// Rows appended.
        rows: usize,
        /// The source version of the append.
        source_version: u64,
    },
    /// A run that found and reprocessed late partitions.
    Rerun {
        /// The date it ran for.
        date: String,
        /// What it did.
        outcome: Box<RunOutcome>,
        /// Whether the target equals a fresh full recomputation afterwards.
        matches_full_recomputation: bool,
    },
    /// A detection alone.
    Detect {
        /// The run date.
        date: String,
        /// What it planned.
        late: Vec<LatePartition>,
    },
    /// The state table at this point.
    Status {
        /// After what.
        after: String,
        /// The rows.
        rows: Vec<StatusRow>,
    },
}

/// Prepares `dir` (the demo's own directory, replaced if a previous demo made it)
/// and returns the default pipeline with its tables inside `dir`.
pub fn prepare(dir: &Path) -> Result<Pipeline, DemoError> {
    let io = |source| DemoError::Io {
        path: dir.to_owned(),
        source,
    };
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(DemoError::DirectoryInUse(dir.to_owned()));
        }
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(
        dir.join(MARKER),
        "made by `latefill demo`; safe to delete\n",
    )
    .map_err(io)?;
    let dir = dir.canonicalize().map_err(io)?;
    let mut pipeline = Pipeline::default_devices(&dir)?;
    pipeline.source = resolve_location("source", "devices", &dir)?;
    pipeline.target = resolve_location("target", "devices_daily", &dir)?;
    pipeline.state = resolve_location("state", "latefill_state", &dir)?;
    Ok(pipeline)
}

async fn generate(
    pipeline: &Pipeline,
    date: PartitionDate,
    rows: usize,
    seed: u64,
) -> Result<GenerateReport, DemoError> {
    Ok(
        GenerateOptions::new(pipeline.source.as_str(), &date.to_string())?
            .with_rows(rows)
            .with_seed(seed)
            .write()
            .await?,
    )
}

/// Runs the whole story; `on_event` sees each step as it finishes.
pub async fn run(
    pipeline: &Pipeline,
    mut on_event: impl FnMut(&DemoEvent),
) -> Result<Vec<DemoEvent>, DemoError> {
    let engine = Engine::new(pipeline.clone());
    let mut events = Vec::new();
    let mut emit = |e: DemoEvent| {
        on_event(&e);
        events.push(e);
    };

    // 1. A week of data, each day processed as it arrives.
    for (i, date) in demo_dates().into_iter().enumerate() {
        let generated = generate(pipeline, date, DEMO_ROWS_PER_DAY, i as u64).await?;
        let outcome = engine.run_date(date).await?;
        emit(DemoEvent::Day {
            date: date.to_string(),
            rows_generated: generated.rows,
            run: Box::new(outcome.run),
        });
    }
    emit(DemoEvent::Status {
        after: "the week".into(),
        rows: engine.status().await?,
    });

    // 2. Late data for two processed days.
    for (d, seed) in [(2, 100), (3, 101)] {
        let late = generate(pipeline, day(d), DEMO_LATE_ROWS, seed).await?;
        emit(DemoEvent::LateData {
            date: day(d).to_string(),
            rows: late.rows,
            source_version: late.table_version,
        });
    }
    emit(DemoEvent::Status {
        after: "late data for 2024-01-02 and 2024-01-03".into(),
        rows: engine.status().await?,
    });

    // 3. The next run finds and reprocesses them.
    let outcome = engine
        .run_date(day(4))
        .with_late(LateHandling::InProcess)
        .await?;
    let matches = matches_full_recomputation(pipeline).await?;
    emit(DemoEvent::Rerun {
        date: day(4).to_string(),
        outcome: Box::new(outcome),
        matches_full_recomputation: matches,
    });
    emit(DemoEvent::Status {
        after: "run --date 2024-01-04".into(),
        rows: engine.status().await?,
    });

    // 4. More late data for 2024-01-02; a detection for 2024-01-03 plans only it.
    let late = generate(pipeline, day(2), DEMO_LATE_ROWS, 102).await?;
    emit(DemoEvent::LateData {
        date: day(2).to_string(),
        rows: late.rows,
        source_version: late.table_version,
    });
    let detection = engine.detect(day(3)).await?;
    emit(DemoEvent::Detect {
        date: day(3).to_string(),
        late: detection.late,
    });
    emit(DemoEvent::Status {
        after: "more late data for 2024-01-02".into(),
        rows: engine.status().await?,
    });
    Ok(events)
}

/// Recomputes every demo day from the source into a scratch table and compares it,
/// sorted, with the target.
async fn matches_full_recomputation(pipeline: &Pipeline) -> Result<bool, DemoError> {
    let mut scratch = pipeline.clone();
    scratch.name = format!("{}-recomputed", pipeline.name);
    let base = pipeline
        .target
        .to_file_path()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    scratch.target = resolve_location("target", "recomputed", &base)?;
    for date in demo_dates() {
        run_partition(&scratch, date).await?;
    }
    let target = table_text(&pipeline.target).await?;
    let recomputed = table_text(&scratch.target).await?;
    if let Ok(path) = scratch.target.to_file_path() {
        let _ = std::fs::remove_dir_all(path);
    }
    Ok(target == recomputed)
}

/// A whole table as sorted text.
async fn table_text(url: &url::Url) -> Result<String, DemoError> {
    let fail = |e: &dyn std::fmt::Display| DemoError::Compare {
        table: url.to_string(),
        reason: e.to_string(),
    };
    let table = deltalake::open_table(url.clone())
        .await
        .map_err(|e| fail(&e))?;
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| fail(&e))?;
    let provider = table.table_provider().await.map_err(|e| fail(&e))?;
    ctx.register_table("t", provider).map_err(|e| fail(&e))?;
    let df = ctx.sql("SELECT * FROM t").await.map_err(|e| fail(&e))?;
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    let sql = format!("SELECT * FROM t ORDER BY {}", columns.join(", "));
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| fail(&e))?
        .collect()
        .await
        .map_err(|e| fail(&e))?;
    Ok(pretty_format_batches(&batches)
        .map_err(|e| fail(&e))?
        .to_string())
}
