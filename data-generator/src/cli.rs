//! Command-line arguments of the generator, shared by `latefill-datagen` and
//! `latefill generate`.

use clap::Args;

use crate::{GenerateOptions, Result};

/// Appends generated device rows for one day to a Delta table (one commit).
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// The Delta table to append to, a path or URL; created if missing.
    #[arg(long, value_name = "URI")]
    pub table: String,
    /// The period the rows belong to (the `event_time` partition): a day YYYY-MM-DD,
    /// an hour YYYY-MM-DDTHH or a month YYYY-MM. A past one makes late data.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: String,
    /// Number of rows to append (per period).
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub rows: usize,
    /// Consecutive periods (days, hours or months) to write from --date, each with
    /// --rows rows, all in one commit: a long history in one step.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub periods: u32,
    /// Seed of the random stream: the same seed and arguments give the same rows.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Percentage of rows that repeat an earlier row.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub duplicates_pct: f64,
    /// Percentage of rows with one field (type, full_name or version) set to null.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub missing_fields_pct: f64,
    /// Percentage of rows whose version is malformed (e.g. `14..1`).
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub unprocessable_pct: f64,
}

impl GenerateArgs {
    /// Validates the arguments into [`GenerateOptions`]; nothing is written yet.
    pub fn to_options(&self) -> Result<GenerateOptions> {
        let options = GenerateOptions::new(&self.table, &self.date)?
            .with_rows(self.rows)
            .with_seed(self.seed)
            .with_duplicates_pct(self.duplicates_pct)
            .with_missing_fields_pct(self.missing_fields_pct)
            .with_unprocessable_pct(self.unprocessable_pct)
            .with_periods(self.periods as usize);
        options.validate()?;
        Ok(options)
    }
}
