//! `latefill demo`: the sample devices pipeline, end to end, on local files.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use latefill_datagen::GenerateOptions;
use latefill_executor::{PartitionDate, Pipeline, RunReport, resolve_location, run_partition};

/// The file that marks a directory as made by the demo, so a re-run may replace it.
const MARKER: &str = ".latefill-demo";

/// Rows generated per day.
pub const DEMO_ROWS_PER_DAY: usize = 10_000;

/// The demo's days: 2024-01-01 to 2024-01-07.
pub fn demo_dates() -> Vec<PartitionDate> {
    let first = NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date");
    first.iter_days().take(7).map(PartitionDate::from).collect()
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
    Run(#[from] latefill_executor::Error),
}

/// One step of the demo, as it happened.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoStep {
    /// The day generated and processed.
    pub date: String,
    /// Rows appended to the source for that day.
    pub rows_generated: usize,
    /// The run of that day.
    pub run: RunReport,
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

/// Generates each demo day and runs the pipeline for it; `on_step` sees each step as
/// it finishes.
pub async fn run(
    pipeline: &Pipeline,
    mut on_step: impl FnMut(&DemoStep),
) -> Result<Vec<DemoStep>, DemoError> {
    let mut steps = Vec::new();
    for (i, date) in demo_dates().into_iter().enumerate() {
        let generated = GenerateOptions::new(pipeline.source.as_str(), &date.to_string())?
            .with_rows(DEMO_ROWS_PER_DAY)
            .with_seed(i as u64)
            .write()
            .await?;
        let run = run_partition(pipeline, date).await?;
        let step = DemoStep {
            date: date.to_string(),
            rows_generated: generated.rows,
            run,
        };
        on_step(&step);
        steps.push(step);
    }
    Ok(steps)
}
