//! Deterministic device datasets for latefill's demos, tests and benchmarks.
//!
//! Each call appends one batch of device rows (`type`, `full_name`, `version`, all
//! strings) for one day to a Delta table partitioned by `event_time` (`YYYY-MM-DD`),
//! creating the table on first use. One call is one Delta commit, so "late data" is
//! simply another call for a past date.
//!
//! ```text
//!  GenerateOptions ──► generate_batch() ──► RecordBatch ──► write() ──► Delta commit
//!  (date, rows, seed,      (pure, seeded)                       (append, partitioned
//!   dirty-data shares)                                            by event_time)
//! ```
//!
//! The same options always give the same rows: the generator is a ChaCha8 stream
//! seeded from `seed`, mixed with the date so that different days differ.
//!
//! ```no_run
//! # async fn example() -> Result<(), latefill_datagen::Error> {
//! use latefill_datagen::GenerateOptions;
//!
//! let report = GenerateOptions::new("./devices", "2024-01-02")?
//!     .with_rows(10_000)
//!     .with_seed(7)
//!     .with_duplicates_pct(5.0)
//!     .write()
//!     .await?;
//! println!("wrote {} rows as version {}", report.rows, report.table_version);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use chrono::{NaiveDate, Timelike};
use deltalake::DeltaTableError;
use deltalake::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::protocol::SaveMode;
use latefill_core::{Granularity, PartitionDate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use url::Url;

mod append;
pub mod cli;

/// The partition column of every generated table.
pub const PARTITION_COLUMN: &str = "event_time";

/// Errors from generating or writing device data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The date is not a day `YYYY-MM-DD`, an hour `YYYY-MM-DDTHH` or a month
    /// `YYYY-MM`.
    #[error(
        "invalid date {value:?}: expected a calendar date written YYYY-MM-DD (e.g. 2024-01-03), \
         an hour YYYY-MM-DDTHH (2024-01-03T05) or a month YYYY-MM (2024-01)"
    )]
    InvalidDate {
        /// The value as given.
        value: String,
    },
    /// A percentage option is outside 0..=100.
    #[error("invalid {option} {value}: expected a percentage from 0 to 100")]
    InvalidPercentage {
        /// The option's name, e.g. `--duplicates-pct`.
        option: &'static str,
        /// The value as given.
        value: f64,
    },
    /// The table location cannot be turned into a URL.
    #[error("invalid table location {location:?}: {reason}")]
    InvalidLocation {
        /// The location as given.
        location: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The Delta table could not be opened, created or written.
    #[error("writing device data to {table}: {source}")]
    Delta {
        /// The table's URL.
        table: Url,
        /// The underlying error.
        #[source]
        source: DeltaTableError,
    },
}

impl Error {
    /// The class of this error: writing failed ([`ErrorClass::Storage`](latefill_core::ErrorClass::Storage)), or an
    /// argument is wrong ([`ErrorClass::Usage`](latefill_core::ErrorClass::Usage)).
    pub fn class(&self) -> latefill_core::ErrorClass {
        match self {
            Error::Delta { .. } => latefill_core::ErrorClass::Storage,
            _ => latefill_core::ErrorClass::Usage,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The devices the generator draws from: `(type, full name, versions)`.
const DEVICES: &[(&str, &str, &[&str])] = &[
    ("galaxy", "Galaxy S24", &["14.0", "14.1", "15.0"]),
    ("galaxy", "Galaxy S23", &["13.0", "14.0", "14.1"]),
    ("galaxy", "Galaxy A54", &["13.0", "14.0"]),
    ("iphone", "iPhone 15", &["17.0", "17.1", "17.2"]),
    ("iphone", "iPhone 14", &["16.6", "17.0", "17.1"]),
    ("iphone", "iPhone SE", &["16.6", "17.2"]),
    ("pixel", "Pixel 8", &["14.0", "14.1"]),
    ("pixel", "Pixel 7a", &["13.0", "14.0"]),
    ("xperia", "Xperia 1 V", &["13.0", "14.0"]),
    ("oneplus", "OnePlus 12", &["14.0"]),
    ("htc", "HTC U23", &["13.0"]),
];

/// Version strings that no parser accepts: the "unprocessable" share of dirty data.
const MALFORMED_VERSIONS: &[&str] = &["14..1", "v?", "NaN", "", "1.2.3.4.5", "latest"];

/// The Arrow schema of generated rows; `event_time` is the partition column.
pub fn device_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("full_name", DataType::Utf8, true),
        Field::new("version", DataType::Utf8, true),
        Field::new(PARTITION_COLUMN, DataType::Utf8, false),
    ]))
}

/// What to generate and where to write it. Built with [`GenerateOptions::new`] and the
/// `with_*` setters; [`GenerateOptions::write`] appends the rows.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    table: Url,
    date: PartitionDate,
    rows: usize,
    seed: u64,
    duplicates_pct: f64,
    missing_fields_pct: f64,
    unprocessable_pct: f64,
    table_properties: Vec<(String, String)>,
    periods: usize,
}

/// What one [`GenerateOptions::write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    /// The table written to.
    pub table: Url,
    /// The partition written, e.g. `event_time=2024-01-02`; with several periods,
    /// `event_time=2024-01-01..2024-12-31 (366 partitions)`.
    pub partition: String,
    /// Rows appended.
    pub rows: usize,
    /// The table version of the append commit.
    pub table_version: u64,
}

impl GenerateOptions {
    /// Options for `date` (`YYYY-MM-DD`) in the table at `table` (a path or URL),
    /// with 1,000 clean rows and seed 0.
    /// `date` is a day (`YYYY-MM-DD`), an hour (`YYYY-MM-DDTHH`) or a month
    /// (`YYYY-MM`): the value of `event_time` in every row.
    pub fn new(table: &str, date: &str) -> Result<Self> {
        Ok(Self {
            table: table_url(table)?,
            date: parse_date(date)?,
            rows: 1_000,
            seed: 0,
            duplicates_pct: 0.0,
            missing_fields_pct: 0.0,
            unprocessable_pct: 0.0,
            table_properties: Vec::new(),
            periods: 1,
        })
    }

    /// Number of rows to append.
    pub fn with_rows(mut self, rows: usize) -> Self {
        self.rows = rows;
        self
    }

    /// Seed of the random stream: same seed and options, same rows.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Share (0..=100) of rows that repeat an earlier row of the same batch.
    pub fn with_duplicates_pct(mut self, pct: f64) -> Self {
        self.duplicates_pct = pct;
        self
    }

    /// Share (0..=100) of rows with one field set to null.
    pub fn with_missing_fields_pct(mut self, pct: f64) -> Self {
        self.missing_fields_pct = pct;
        self
    }

    /// Share (0..=100) of rows whose version is a malformed string.
    pub fn with_unprocessable_pct(mut self, pct: f64) -> Self {
        self.unprocessable_pct = pct;
        self
    }

    /// A Delta table property (`delta.checkpointInterval`, `delta.logRetentionDuration`,
    /// ...) for the table's creation; ignored when the table exists. Tests use it to
    /// give a table the history production tables have: checkpoints every 10 commits
    /// as Spark writes them, and log cleanup.
    pub fn with_table_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.table_properties.push((key.into(), value.into()));
        self
    }

    /// Writes `periods` consecutive periods (days, hours or months) from the date,
    /// each with its rows, in the one commit: a long history without a commit per
    /// day. Each period draws the rows that period alone would.
    pub fn with_periods(mut self, periods: usize) -> Self {
        self.periods = periods.max(1);
        self
    }

    /// The table these options write to.
    pub fn table(&self) -> &Url {
        &self.table
    }

    pub(crate) fn validate(&self) -> Result<()> {
        for (option, value) in [
            ("--duplicates-pct", self.duplicates_pct),
            ("--missing-fields-pct", self.missing_fields_pct),
            ("--unprocessable-pct", self.unprocessable_pct),
        ] {
            if !(0.0..=100.0).contains(&value) {
                return Err(Error::InvalidPercentage { option, value });
            }
        }
        Ok(())
    }

    /// Generates the rows in memory, without touching storage.
    pub fn generate_batch(&self) -> Result<RecordBatch> {
        self.validate()?;
        // Mix the period into the seed so that two days (hours, months) with the same
        // seed differ; days mix as they always have, so their rows never change.
        let day = self
            .date
            .date()
            .signed_duration_since(NaiveDate::MIN)
            .num_days() as u64;
        let mix = match self.date.granularity() {
            Granularity::Day => day,
            Granularity::Hour => (1 << 40) + day * 24 + u64::from(self.date.start().hour()),
            Granularity::Month => (1 << 41) + day,
        };
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ mix.wrapping_mul(0x9E37_79B9_7F4A_7C15));

        let duplicate_p = self.duplicates_pct / 100.0;
        let missing_p = self.missing_fields_pct / 100.0;
        let unprocessable_p = self.unprocessable_pct / 100.0;

        // Rows are kept as indices into the catalogue so duplicates are cheap copies.
        #[derive(Clone, Copy)]
        struct Row {
            device: u16,
            version: u16,
            malformed: Option<u16>,
            null_field: Option<u8>,
        }
        let mut rows: Vec<Row> = Vec::with_capacity(self.rows);
        for i in 0..self.rows {
            if i > 0 && rng.random_bool(duplicate_p) {
                let earlier = rows[rng.random_range(0..i)];
                rows.push(earlier);
                continue;
            }
            let device = rng.random_range(0..DEVICES.len());
            let version = rng.random_range(0..DEVICES[device].2.len());
            let malformed = rng
                .random_bool(unprocessable_p)
                .then(|| rng.random_range(0..MALFORMED_VERSIONS.len()) as u16);
            let null_field = rng.random_bool(missing_p).then(|| rng.random_range(0..3u8));
            rows.push(Row {
                device: device as u16,
                version: version as u16,
                malformed,
                null_field,
            });
        }

        let date = self.date.to_string();
        let mut types = StringBuilder::with_capacity(self.rows, self.rows * 6);
        let mut names = StringBuilder::with_capacity(self.rows, self.rows * 10);
        let mut versions = StringBuilder::with_capacity(self.rows, self.rows * 4);
        let mut event_times = StringBuilder::with_capacity(self.rows, self.rows * 10);
        for row in &rows {
            let (kind, name, known_versions) = DEVICES[row.device as usize];
            let version = match row.malformed {
                Some(m) => MALFORMED_VERSIONS[m as usize],
                None => known_versions[row.version as usize],
            };
            let null = row.null_field;
            types.append_option((null != Some(0)).then_some(kind));
            names.append_option((null != Some(1)).then_some(name));
            versions.append_option((null != Some(2)).then_some(version));
            event_times.append_value(&date);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(types.finish()),
            Arc::new(names.finish()),
            Arc::new(versions.finish()),
            Arc::new(event_times.finish()),
        ];
        RecordBatch::try_new(device_schema(), columns).map_err(|e| Error::Delta {
            table: self.table.clone(),
            source: e.into(),
        })
    }

    /// Generates the rows and appends them to the table in one commit, creating the
    /// table (partitioned by `event_time`) if it does not exist.
    pub async fn write(self) -> Result<GenerateReport> {
        let mut batches = Vec::with_capacity(self.periods);
        let mut period = self.clone();
        for _ in 0..self.periods {
            batches.push(period.generate_batch()?);
            period.date = period.date.succ().ok_or_else(|| Error::InvalidDate {
                value: format!("{} + {} periods", self.date, self.periods),
            })?;
        }
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let delta_err = |source| Error::Delta {
            table: self.table.clone(),
            source,
        };
        let storage = Default::default();
        // A table that exists takes the rows as a plain append (see `append`); a new
        // one is created through delta-rs's write.
        let mut version = None;
        if !latefill_core::storage::is_local_without_log(&self.table) {
            let table = latefill_core::storage::table_builder(&self.table, &storage)
                .and_then(|builder| builder.build())
                .map_err(delta_err)?;
            if let append::Plain::Committed(committed) = append::append(table.log_store(), &batches)
                .await
                .map_err(delta_err)?
            {
                version = Some(committed);
            }
        }
        match version {
            Some(version) => Ok(self.report(rows, version)),
            None => self.write_through_delta_rs(batches, rows).await,
        }
    }

    /// Appends `batches` with delta-rs's write, creating the table (with the table
    /// properties given) if it does not exist.
    async fn write_through_delta_rs(
        self,
        batches: Vec<RecordBatch>,
        rows: usize,
    ) -> Result<GenerateReport> {
        let delta_err = |source| Error::Delta {
            table: self.table.clone(),
            source,
        };
        if self.table.scheme() == "file" {
            let path = self.table.to_file_path().expect("file URL has a path");
            std::fs::create_dir_all(&path).map_err(|e| delta_err(DeltaTableError::from(e)))?;
        }
        let table = latefill_core::storage::open_or_new(&self.table, &Default::default())
            .await
            .map_err(delta_err)?;
        let table = table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_partition_columns([PARTITION_COLUMN])
            .with_configuration(
                self.table_properties
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
            )
            .await
            .map_err(delta_err)?;
        let version = table.version().unwrap_or_default();
        Ok(self.report(rows, version))
    }

    /// What appending `rows` at `table_version` did.
    fn report(self, rows: usize, table_version: u64) -> GenerateReport {
        let first = self.date.partition_name(PARTITION_COLUMN);
        let partition = match self.periods {
            1 => first,
            n => {
                let last = (1..n)
                    .try_fold(self.date, |d, _| d.succ())
                    .unwrap_or(self.date);
                format!("{first}..{last} ({n} partitions)")
            }
        };
        GenerateReport {
            partition,
            table: self.table,
            rows,
            table_version,
        }
    }
}

/// Parses a strict day `YYYY-MM-DD`, hour `YYYY-MM-DDTHH` or month `YYYY-MM`.
pub fn parse_date(value: &str) -> Result<PartitionDate> {
    [Granularity::Day, Granularity::Hour, Granularity::Month]
        .into_iter()
        .find_map(|g| PartitionDate::parse_as(g, value).ok())
        .ok_or_else(|| Error::InvalidDate {
            value: value.to_owned(),
        })
}

/// Turns a path or URL into a table URL; relative paths are made absolute.
pub fn table_url(location: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidLocation {
        location: location.to_owned(),
        reason,
    };
    if location.is_empty() {
        return Err(invalid("the location is empty".into()));
    }
    if let Ok(url) = Url::parse(location)
        && url.scheme().len() > 1
    {
        return Ok(url);
    }
    let path = std::path::Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(format!("cannot read the current directory: {e}")))?
            .join(path)
    };
    Url::from_directory_path(&absolute).map_err(|()| invalid("not a valid directory path".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Array, AsArray};

    fn options(date: &str) -> GenerateOptions {
        GenerateOptions::new("/tmp/unused", date).unwrap()
    }

    #[test]
    fn same_seed_same_rows_other_seed_other_rows() {
        let a = options("2024-01-02").with_rows(500).with_seed(3);
        let b = options("2024-01-02").with_rows(500).with_seed(3);
        let c = options("2024-01-02").with_rows(500).with_seed(4);
        assert_eq!(a.generate_batch().unwrap(), b.generate_batch().unwrap());
        assert_ne!(a.generate_batch().unwrap(), c.generate_batch().unwrap());
    }

    #[test]
    fn dirty_data_shares_are_roughly_honoured() {
        let batch = options("2024-01-02")
            .with_rows(20_000)
            .with_missing_fields_pct(30.0)
            .with_unprocessable_pct(10.0)
            .generate_batch()
            .unwrap();
        let nulls: usize = (0..3).map(|c| batch.column(c).null_count()).sum();
        let share = nulls as f64 / 20_000.0;
        assert!((0.27..0.33).contains(&share), "null share {share}");
        let versions = batch.column(2).as_string::<i32>();
        let malformed = versions
            .iter()
            .flatten()
            .filter(|v| MALFORMED_VERSIONS.contains(v))
            .count() as f64
            / 20_000.0;
        assert!(
            (0.08..0.12).contains(&malformed),
            "malformed share {malformed}"
        );
    }

    #[test]
    fn clean_data_has_no_nulls_and_known_versions() {
        let batch = options("2024-01-05")
            .with_rows(2_000)
            .generate_batch()
            .unwrap();
        for c in 0..4 {
            assert_eq!(batch.column(c).null_count(), 0);
        }
        let dates = batch.column(3).as_string::<i32>();
        assert!(dates.iter().all(|d| d == Some("2024-01-05")));
    }

    #[test]
    fn writes_hours_and_months_as_their_own_partitions() {
        let day = options("2024-01-05").generate_batch().unwrap();
        for value in ["2024-01-05T07", "2024-01"] {
            let batch = options(value).generate_batch().unwrap();
            let times = batch.column(3).as_string::<i32>();
            assert!(times.iter().all(|t| t == Some(value)), "{value}");
            assert_ne!(batch.column(0), day.column(0), "{value} draws other rows");
        }
        let hour = options("2024-01-05T07");
        assert_eq!(
            hour.date.partition_name(PARTITION_COLUMN),
            "event_time=2024-01-05T07"
        );
    }

    #[test]
    fn rejects_bad_dates_and_percentages() {
        for bad in ["2024-1-3", "2024-02-30", "yesterday", "2024/01/03", ""] {
            assert!(
                matches!(
                    GenerateOptions::new("/tmp/x", bad),
                    Err(Error::InvalidDate { .. })
                ),
                "{bad} accepted"
            );
        }
        let err = options("2024-01-02")
            .with_duplicates_pct(120.0)
            .generate_batch()
            .unwrap_err();
        assert!(err.to_string().contains("--duplicates-pct 120"), "{err}");
    }
}
