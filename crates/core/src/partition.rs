//! Partitions: the dates a run processes, and the keys that name them.
//!
//! A [`PartitionKey`] is the only place where a partition's name, `column=YYYY-MM-DD`,
//! is written or read: in the state table, in `txn` app ids, in the output, and when
//! the detector's names of source partitions (`event_time=2024-01-03/region=eu`) are
//! mapped to the pipeline's partitions.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// A value that is not a period of the expected granularity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date {value:?}: expected {expected}")]
pub struct InvalidPeriod {
    /// The value as given.
    pub value: String,
    /// What was expected, e.g. `a calendar date written YYYY-MM-DD, e.g. 2024-01-03`.
    pub expected: &'static str,
}

/// How long one partition of a pipeline lasts, and how its value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Granularity {
    /// `YYYY-MM-DDTHH`, e.g. `2024-01-03T05`.
    Hour,
    /// `YYYY-MM-DD`, e.g. `2024-01-03` (the default).
    #[default]
    Day,
    /// `YYYY-MM`, e.g. `2024-01`.
    Month,
}

impl Granularity {
    /// The name in the pipeline file: `hour`, `day` or `month`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }

    /// How a value is written, for messages: `YYYY-MM-DD`.
    pub fn pattern(&self) -> &'static str {
        match self {
            Granularity::Hour => "YYYY-MM-DDTHH",
            Granularity::Day => "YYYY-MM-DD",
            Granularity::Month => "YYYY-MM",
        }
    }

    /// What a value of this granularity looks like, for messages: `a calendar date
    /// written YYYY-MM-DD, e.g. 2024-01-03`.
    pub fn what(&self) -> &'static str {
        match self {
            Granularity::Hour => "an hour written YYYY-MM-DDTHH, e.g. 2024-01-03T05",
            Granularity::Day => "a calendar date written YYYY-MM-DD, e.g. 2024-01-03",
            Granularity::Month => "a month written YYYY-MM, e.g. 2024-01",
        }
    }
}

impl FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            "month" => Ok(Granularity::Month),
            other => Err(format!(
                "unknown granularity {other:?}: expected \"hour\", \"day\" or \"month\""
            )),
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One partition's period: an hour, a day or a month, checked when made. Displays
/// as the partition column's value (`2024-01-03T05`, `2024-01-03`, `2024-01`).
///
/// Periods order by their start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionDate {
    start: NaiveDateTime,
    granularity: Granularity,
}

impl PartitionDate {
    /// An example period of `granularity` (2024-01-03, at 05:00 for hours), for
    /// messages.
    pub fn example(granularity: Granularity) -> Self {
        let value = match granularity {
            Granularity::Day => "2024-01-03",
            Granularity::Hour => "2024-01-03T05",
            Granularity::Month => "2024-01",
        };
        Self::parse_as(granularity, value).expect("a valid example")
    }

    /// Parses a strict `YYYY-MM-DD` day (chrono alone would accept `2024-1-3`).
    pub fn parse(value: &str) -> Result<Self, InvalidPeriod> {
        Self::parse_as(Granularity::Day, value)
    }

    /// Parses a strict value of `granularity`: `YYYY-MM-DDTHH`, `YYYY-MM-DD` or
    /// `YYYY-MM`.
    pub fn parse_as(granularity: Granularity, value: &str) -> Result<Self, InvalidPeriod> {
        let invalid = || InvalidPeriod {
            value: value.to_owned(),
            expected: granularity.what(),
        };
        if value.len() != granularity.pattern().len() {
            return Err(invalid());
        }
        let day = parse_ymd;
        let start = match granularity {
            Granularity::Day => day(value).map(|d| d.and_time(NaiveTime::MIN)),
            Granularity::Month => day(&format!("{value}-01")).map(|d| d.and_time(NaiveTime::MIN)),
            Granularity::Hour => {
                // `get`, not `split_at`: byte 10 may fall inside a character.
                let d = value.get(..10).and_then(day);
                let hour = value
                    .get(10..)
                    .and_then(|h| h.strip_prefix('T'))
                    .filter(|h| h.bytes().all(|b| b.is_ascii_digit()));
                match (d, hour.and_then(|h| h.parse::<u32>().ok())) {
                    (Some(d), Some(h)) => d.and_hms_opt(h, 0, 0),
                    _ => None,
                }
            }
        };
        start
            .map(|start| PartitionDate { start, granularity })
            .ok_or_else(invalid)
    }

    /// The period of `granularity` that a raw partition value falls in: the value in
    /// the granularity's own form (`2024-01-03T05`), or a date or timestamp as Delta
    /// writes DATE and TIMESTAMP partition values (`2024-01-03`,
    /// `2024-01-03 05:17:00.000000`, `2024-01-03T05:17:00Z`), truncated to the period.
    /// The planner and the executor both decide with this which source partitions
    /// make up a pipeline partition.
    pub fn of_value(granularity: Granularity, raw: &str) -> Option<Self> {
        if let Ok(period) = Self::parse_as(granularity, raw) {
            return Some(period);
        }
        let instant = chrono::DateTime::parse_from_rfc3339(raw)
            .map(|t| t.naive_utc())
            .ok()
            .or_else(|| {
                let text = raw.trim_end_matches('Z').replacen('T', " ", 1);
                ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
                    .iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(&text, f).ok())
            })
            .or_else(|| parse_ymd(raw).map(|d| d.and_time(NaiveTime::MIN)))?;
        Self::containing(granularity, instant)
    }

    /// The period of `granularity` that `instant` falls in.
    pub fn containing(granularity: Granularity, instant: NaiveDateTime) -> Option<Self> {
        let start = match granularity {
            Granularity::Hour => instant.date().and_hms_opt(instant.hour(), 0, 0)?,
            Granularity::Day => instant.date().and_time(NaiveTime::MIN),
            Granularity::Month => instant.date().with_day(1)?.and_time(NaiveTime::MIN),
        };
        Some(PartitionDate { start, granularity })
    }

    /// When the period ends: the next period's start.
    pub fn end(&self) -> Option<NaiveDateTime> {
        self.succ().map(|next| next.start)
    }

    /// The day the period starts on.
    pub fn date(&self) -> NaiveDate {
        self.start.date()
    }

    /// When the period starts.
    pub fn start(&self) -> NaiveDateTime {
        self.start
    }

    /// The period's granularity.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The next period of the same granularity.
    pub fn succ(&self) -> Option<Self> {
        let start = match self.granularity {
            Granularity::Hour => self.start.checked_add_signed(chrono::Duration::hours(1))?,
            Granularity::Day => self.start.checked_add_days(chrono::Days::new(1))?,
            Granularity::Month => self.start.checked_add_months(chrono::Months::new(1))?,
        };
        Some(PartitionDate { start, ..*self })
    }

    /// The partition's name in the table: `column=<value>`.
    pub fn partition_name(&self, column: &str) -> String {
        PartitionKey::new(column, *self).to_string()
    }
}

impl From<NaiveDate> for PartitionDate {
    fn from(date: NaiveDate) -> Self {
        PartitionDate {
            start: date.and_time(NaiveTime::MIN),
            granularity: Granularity::Day,
        }
    }
}

impl FromStr for PartitionDate {
    type Err = InvalidPeriod;
    fn from_str(s: &str) -> Result<Self, InvalidPeriod> {
        Self::parse(s)
    }
}

/// Reads `raw`, written in the strftime `format`, as a period of `granularity`: a
/// month's day and an hour's minutes may be left out of the format.
fn parse_period(granularity: Granularity, format: &str, raw: &str) -> Option<PartitionDate> {
    use chrono::format::{Parsed, StrftimeItems, parse};
    let mut parsed = Parsed::new();
    parse(&mut parsed, raw.trim(), StrftimeItems::new(format)).ok()?;
    if parsed.day().is_none() && granularity == Granularity::Month {
        parsed.set_day(1).ok()?;
    }
    let date = parsed.to_naive_date().ok()?;
    let start = match granularity {
        Granularity::Hour => {
            if parsed.minute().is_none() {
                parsed.set_minute(0).ok()?;
            }
            date.and_time(parsed.to_naive_time().ok()?)
        }
        _ => date.and_time(NaiveTime::MIN),
    };
    let period =
        PartitionDate::of_value(granularity, &start.format("%Y-%m-%d %H:%M:%S").to_string())?;
    // The whole period, not an instant inside it (a format with minutes).
    (period.start == start).then_some(period)
}

/// `YYYY-MM-DD`, every part at its full width (chrono's `%Y-%m-%d` alone accepts
/// `2024-1-3`). By hand: planning names thousands of partitions, and chrono parses its
/// format string at each call.
fn parse_ymd(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)
}

/// Writes `date` as `YYYY-MM-DD`.
fn write_ymd(f: &mut fmt::Formatter<'_>, date: NaiveDate) -> fmt::Result {
    write!(
        f,
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    )
}

impl fmt::Display for PartitionDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = self.start.date();
        match self.granularity {
            Granularity::Hour => {
                write_ymd(f, date)?;
                write!(f, "T{:02}", self.start.hour())
            }
            Granularity::Day => write_ymd(f, date),
            Granularity::Month => write!(f, "{:04}-{:02}", date.year(), date.month()),
        }
    }
}

/// How a pipeline's partitions are laid out in its tables: the column that holds the
/// period, the period's [`Granularity`] and, for hours kept apart from their day
/// (`event_date=2024-01-03/event_hour=5`), the hour column.
///
/// It maps a table's partition values to the pipeline's periods, in both directions,
/// and it alone names partitions ([`PartitionKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Partitioning {
    column: String,
    hour_column: Option<String>,
    granularity: Granularity,
    format: Option<String>,
}

impl Partitioning {
    /// Periods of `granularity` held in `column`.
    pub fn new(column: impl Into<String>, granularity: Granularity) -> Self {
        Partitioning {
            column: column.into(),
            hour_column: None,
            granularity,
            format: None,
        }
    }

    /// Periods written in `format`, a strftime pattern (`%Y%m%d` for `20240503`,
    /// `%Y/%m/%d`, `%Y%m` for months, `%Y%m%d%H` for hours), as Hive and Spark tables
    /// often store them, in an integer or a string column. Partition names, the
    /// source's filter and the target's writes use it; `--date` takes either form.
    /// Fails, naming the pattern, when it cannot write and read back every period
    /// of the granularity.
    pub fn with_format(mut self, format: impl Into<String>) -> Result<Self, String> {
        let format = format.into();
        let needs: &[(&str, &str)] = match self.granularity {
            Granularity::Month => &[("%Y", "the year"), ("%m", "the month")],
            Granularity::Day => &[("%Y", "the year"), ("%m", "the month"), ("%d", "the day")],
            Granularity::Hour => &[
                ("%Y", "the year"),
                ("%m", "the month"),
                ("%d", "the day"),
                ("%H", "the hour"),
            ],
        };
        if let Some((_, what)) = needs.iter().find(|(item, _)| !format.contains(item)) {
            return Err(format!(
                "partition_format {format:?} does not write {what}, which a {} partition needs \
                 (e.g. \"%Y%m%d\" for 20240503)",
                self.granularity
            ));
        }
        if self.hour_column.is_some()
            && self.granularity == Granularity::Hour
            && format.contains("%H")
        {
            return Err(format!(
                "partition_format {format:?} writes the hour, which hour_column holds"
            ));
        }
        // Every period must come back from what it is written as.
        let mut probe = PartitionDate::example(self.granularity);
        for _ in 0..40 {
            let written = probe.start.format(&format).to_string();
            if parse_period(self.granularity, &format, &written) != Some(probe) {
                return Err(format!(
                    "partition_format {format:?} writes {probe} as {written:?}, which does \
                     not read back as {probe}"
                ));
            }
            probe = probe.succ().expect("a near period");
        }
        self.format = Some(format);
        Ok(self)
    }

    /// The strftime pattern the period's column holds, when declared
    /// ([`Partitioning::with_format`]).
    pub fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    /// `date` as the period's column holds it: in the declared format, else the
    /// period's own form (`2024-01-03`).
    pub fn value_of(&self, date: PartitionDate) -> String {
        match &self.format {
            Some(format) => date.start.format(format).to_string(),
            None if self.hour_column.is_some() => date.date().format("%Y-%m-%d").to_string(),
            None => date.to_string(),
        }
    }

    /// Parses a period given on the command line: its own form (`2024-01-03`) or, with
    /// a declared format, as the column holds it (`20240503`).
    pub fn parse_period(&self, value: &str) -> Option<PartitionDate> {
        PartitionDate::parse_as(self.granularity, value)
            .ok()
            .or_else(|| self.parse_stored(value))
    }

    /// A value in the declared format, for the period column; `None` without one.
    fn parse_stored(&self, value: &str) -> Option<PartitionDate> {
        let granularity = match self.hour_column {
            Some(_) => Granularity::Day,
            None => self.granularity,
        };
        parse_period(granularity, self.format.as_deref()?, value)
    }

    /// Hours split over two columns: the day in [`Partitioning::column`] and the hour
    /// of the day (0 to 23) in `column`. Makes the granularity an hour.
    pub fn with_hour_column(mut self, column: impl Into<String>) -> Self {
        self.hour_column = Some(column.into());
        self.granularity = Granularity::Hour;
        self
    }

    /// The column that holds the period (the day, when hours are split).
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The column that holds the hour of the day, when hours are split.
    pub fn hour_column(&self) -> Option<&str> {
        self.hour_column.as_deref()
    }

    /// How long one partition lasts.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Every column a partition's value is spread over: the period's, then the hour's.
    pub fn columns(&self) -> Vec<&str> {
        std::iter::once(self.column.as_str())
            .chain(self.hour_column.as_deref())
            .collect()
    }

    /// The partition of `date`.
    pub fn key(&self, date: PartitionDate) -> PartitionKey {
        let value = self.format.as_ref().map(|_| match self.hour_column {
            Some(_) => self.value_of(PartitionDate::from(date.date())),
            None => self.value_of(date),
        });
        PartitionKey {
            name: key_name(
                &self.column,
                self.hour_column.as_deref(),
                date,
                value.as_deref(),
            ),
            column: self.column.clone(),
            date,
        }
    }

    /// The partition's name: `column=<value>`, or `day_column=YYYY-MM-DD/hour_column=HH`.
    pub fn name(&self, date: PartitionDate) -> String {
        self.key(date).name
    }

    /// Reads a name [`Partitioning::name`] wrote; `None` for anything else (another
    /// column, another form).
    pub fn parse_name(&self, name: &str) -> Option<PartitionKey> {
        let value = name.strip_prefix(self.column.as_str())?.strip_prefix('=')?;
        if self.format.is_some() {
            let (day, hour) = match &self.hour_column {
                None => (value, None),
                Some(hour_column) => {
                    let (day, hour) = value.split_once('/')?;
                    let hour = hour.strip_prefix(hour_column.as_str())?.strip_prefix('=')?;
                    (day, Some(hour.parse::<u32>().ok()?))
                }
            };
            let mut date = self.parse_stored(day)?;
            if let Some(hour) = hour {
                date = PartitionDate {
                    start: date.date().and_hms_opt(hour, 0, 0)?,
                    granularity: Granularity::Hour,
                };
            }
            let key = self.key(date);
            return (key.as_str() == name).then_some(key);
        }
        let date = match &self.hour_column {
            None => PartitionDate::parse_as(self.granularity, value).ok()?,
            Some(hour_column) => {
                let (day, hour) = value.split_once('/')?;
                let hour = hour.strip_prefix(hour_column.as_str())?.strip_prefix('=')?;
                let key = self.key(
                    PartitionDate::parse_as(Granularity::Hour, &format!("{day}T{hour}")).ok()?,
                );
                // Only the canonical form: `05`, never `5`.
                return (key.as_str() == name).then_some(key);
            }
        };
        Some(self.key(date))
    }

    /// The period a table partition's values fall in ([`PartitionDate::of_value`]);
    /// `value(column)` is `None` when the partition has no such column and
    /// `Some(None)` when its value is null. The error says why there is none.
    pub fn period_of<'a>(
        &self,
        value: impl Fn(&str) -> Option<Option<&'a str>>,
    ) -> Result<PartitionDate, String> {
        let get = |column: &str| {
            value(column)
                .ok_or_else(|| format!("has no value for column {column:?}"))?
                .ok_or_else(|| format!("has a null {column:?}"))
        };
        let raw = get(&self.column)?;
        // The period's column alone, or the day of a split hour.
        let date = match &self.format {
            Some(format) => self.parse_stored(raw).ok_or_else(|| {
                format!(
                    "has {:?} value {raw:?}, which is not a period written {format:?}",
                    self.column
                )
            })?,
            None => {
                let granularity = match self.hour_column {
                    Some(_) => Granularity::Day,
                    None => self.granularity,
                };
                PartitionDate::of_value(granularity, raw).ok_or_else(|| {
                    format!(
                        "has {:?} value {raw:?}, which is not {}",
                        self.column,
                        granularity.what()
                    )
                })?
            }
        };
        let Some(hour_column) = &self.hour_column else {
            return Ok(date);
        };
        let raw_hour = get(hour_column)?;
        raw_hour
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|h| *h < 24)
            .and_then(|h| date.date().and_hms_opt(h, 0, 0))
            .map(|start| PartitionDate {
                start,
                granularity: Granularity::Hour,
            })
            .ok_or_else(|| {
                format!("has {hour_column:?} value {raw_hour:?}, which is not an hour from 0 to 23")
            })
    }

    /// The pipeline partition a source partition named `partition` belongs to, from
    /// its values (`column -> raw value`, `None` for null), whatever other columns the
    /// source is partitioned by.
    pub fn key_of<'a>(
        &self,
        partition: &SourcePartition,
        values: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<PartitionKey, UnrecognisedPartition> {
        let values: Vec<(&str, Option<&str>)> = values.into_iter().collect();
        self.period_of(|column| values.iter().find(|(c, _)| *c == column).map(|(_, v)| *v))
            .map(|date| self.key(date))
            .map_err(|reason| UnrecognisedPartition {
                partition: partition.clone(),
                reason,
            })
    }
}

/// One partition of a pipeline: its name and its period. Made by a [`Partitioning`]
/// (which alone reads names); displays, compares, orders and serialises as its name,
/// `column=<value>`, or `day_column=YYYY-MM-DD/hour_column=HH` when hours are split,
/// so that it can key a map looked up by name ([`Borrow<str>`](std::borrow::Borrow)).
#[derive(Debug, Clone)]
pub struct PartitionKey {
    name: String,
    column: String,
    date: PartitionDate,
}

/// The name of the partition of `date`: `column=<value>` (the period in its stored
/// form `value`, if declared), with `/hour_column=HH` when hours are split.
fn key_name(
    column: &str,
    hour_column: Option<&str>,
    date: PartitionDate,
    value: Option<&str>,
) -> String {
    use std::fmt::Write;
    let mut name = String::with_capacity(40);
    match (hour_column, value) {
        (None, Some(value)) => write!(name, "{column}={value}"),
        (None, None) => write!(name, "{column}={date}"),
        (Some(hour_column), value) => {
            let day = match value {
                Some(value) => value.to_owned(),
                None => PartitionDate::from(date.date()).to_string(),
            };
            write!(
                name,
                "{column}={day}/{hour_column}={:02}",
                date.start.hour()
            )
        }
    }
    .expect("writing to a String");
    name
}

/// Why a source partition does not name a partition of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("source partition {partition} {reason}")]
pub struct UnrecognisedPartition {
    /// The source partition.
    pub partition: SourcePartition,
    /// What is wrong with it, e.g. `has no value for column "event_time"`.
    pub reason: String,
}

impl PartitionKey {
    /// The partition of `column` at `date`, its period held in one column.
    pub fn new(column: impl Into<String>, date: PartitionDate) -> Self {
        Partitioning::new(column, date.granularity()).key(date)
    }

    /// The period's column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The partition's name, `column=<value>` (what [`Partitioning::parse_name`]
    /// reads back).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The period.
    pub fn date(&self) -> PartitionDate {
        self.date
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name)
    }
}

impl PartialEq for PartitionKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for PartitionKey {}

impl PartialOrd for PartitionKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PartitionKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl std::hash::Hash for PartitionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl std::borrow::Borrow<str> for PartitionKey {
    fn borrow(&self) -> &str {
        &self.name
    }
}

impl AsRef<str> for PartitionKey {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl PartialEq<str> for PartitionKey {
    fn eq(&self, other: &str) -> bool {
        self.name == other
    }
}

impl PartialEq<String> for PartitionKey {
    fn eq(&self, other: &String) -> bool {
        &self.name == other
    }
}

impl PartialEq<&str> for PartitionKey {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

impl serde::Serialize for PartitionKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

/// A partition of a source table as its log names it, `col=value[/col=value...]`
/// over all of the table's partition columns (which may be more than a pipeline's:
/// `event_time=2024-01-03/region=eu`). A pipeline reads its own [`PartitionKey`]
/// from it with [`Partitioning::key_of`]. Displays, compares and serialises as the
/// name.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SourcePartition(String);

impl SourcePartition {
    /// The source partition named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        SourcePartition(name.into())
    }

    /// Its name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourcePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::borrow::Borrow<str> for SourcePartition {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SourcePartition {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SourcePartition {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strict_dates_only() {
        let d = PartitionDate::parse("2024-01-03").unwrap();
        assert_eq!(d.to_string(), "2024-01-03");
        assert_eq!(d.partition_name("event_time"), "event_time=2024-01-03");
        for bad in [
            "2024-1-3",
            "2024-13-01",
            "2024-02-30",
            "03/01/2024",
            "",
            "2024-01-03x",
            "2024/01/03",
            "2024-01-3 ",
            "+024-01-03",
            "2024-0a-03",
        ] {
            assert!(PartitionDate::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_granularity_reads_back_what_it_writes() {
        for (granularity, value) in [
            (Granularity::Day, "0999-12-31"),
            (Granularity::Hour, "2024-01-03T05"),
            (Granularity::Hour, "2024-01-03T23"),
            (Granularity::Month, "2024-02"),
        ] {
            let date = PartitionDate::parse_as(granularity, value).unwrap();
            assert_eq!(date.to_string(), value);
        }
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    fn date(s: &str) -> PartitionDate {
        PartitionDate::parse(s).unwrap()
    }

    #[test]
    fn a_key_reads_back_the_name_it_writes() {
        let days = Partitioning::new("event_time", Granularity::Day);
        let key = days.key(date("2024-01-03"));
        assert_eq!(key.to_string(), "event_time=2024-01-03");
        assert_eq!(days.parse_name(key.as_str()), Some(key));
        let other = Partitioning::new("day", Granularity::Day);
        assert_eq!(other.parse_name("event_time=2024-01-03"), None);
        assert_eq!(days.parse_name("event_time=x"), None);
        let hours = Partitioning::new("event_time", Granularity::Hour);
        let key = hours.parse_name("event_time=2024-01-03T05").unwrap();
        assert_eq!(key.to_string(), "event_time=2024-01-03T05");
        assert_eq!(hours.parse_name("event_time=2024-01-03"), None);
    }

    #[test]
    fn a_split_hour_is_named_by_both_columns() {
        let split =
            Partitioning::new("event_date", Granularity::Day).with_hour_column("event_hour");
        assert_eq!(split.granularity(), Granularity::Hour);
        assert_eq!(split.columns(), ["event_date", "event_hour"]);
        let hour = PartitionDate::parse_as(Granularity::Hour, "2024-01-03T05").unwrap();
        let name = split.name(hour);
        assert_eq!(name, "event_date=2024-01-03/event_hour=05");
        assert_eq!(split.parse_name(&name).map(|k| k.date()), Some(hour));
        for other in [
            "event_date=2024-01-03/event_hour=5",
            "event_date=2024-01-03T05",
            "event_date=2024-01-03/hour=05",
            "event_date=2024-01-03/event_hour=24",
        ] {
            assert_eq!(split.parse_name(other), None, "{other}");
        }
        // Hive writes an integer hour without padding; a DATE day as YYYY-MM-DD.
        for (day, h) in [("2024-01-03", "5"), ("2024-01-03", "05")] {
            let values = [("event_date", Some(day)), ("event_hour", Some(h))];
            assert_eq!(
                split
                    .key_of(&SourcePartition::new("p"), values)
                    .unwrap()
                    .date(),
                hour
            );
        }
        for (h, why) in [
            (Some("24"), "not an hour"),
            (Some("x"), "not an hour"),
            (None, "null"),
        ] {
            let values = [("event_date", Some("2024-01-03")), ("event_hour", h)];
            let err = split
                .key_of(&SourcePartition::new("p"), values)
                .unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        let err = split
            .key_of(
                &SourcePartition::new("p"),
                [("event_date", Some("2024-01-03"))],
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no value for column \"event_hour\""),
            "{err}"
        );
    }

    #[test]
    fn a_source_partition_of_several_columns_maps_to_its_date() {
        let values = [("region", Some("eu")), ("event_time", Some("2024-01-01"))];
        let days = Partitioning::new("event_time", Granularity::Day);
        assert_eq!(
            days.key_of(&SourcePartition::new("p"), values)
                .unwrap()
                .to_string(),
            "event_time=2024-01-01"
        );
    }

    #[test]
    fn a_source_partition_that_is_no_date_says_why() {
        let cases = [
            (
                vec![("event_time", Some("2024/01/01"))],
                "not a calendar date",
            ),
            (vec![("event_time", None)], "null"),
            (vec![("region", Some("eu"))], "no value"),
        ];
        let days = Partitioning::new("event_time", Granularity::Day);
        for (values, why) in cases {
            let err = days.key_of(&SourcePartition::new("p"), values).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
    }
}

#[cfg(test)]
mod granularity_tests {
    use super::*;

    #[test]
    fn each_granularity_reads_and_writes_its_own_form_only() {
        let cases = [
            (Granularity::Hour, "2024-01-03T05", "2024-01-03T06"),
            (Granularity::Hour, "2024-12-31T23", "2025-01-01T00"),
            (Granularity::Day, "2024-02-28", "2024-02-29"),
            (Granularity::Month, "2024-12", "2025-01"),
        ];
        for (granularity, value, next) in cases {
            let period = PartitionDate::parse_as(granularity, value).unwrap();
            assert_eq!(period.to_string(), value);
            assert_eq!(period.succ().unwrap().to_string(), next);
        }
        for (granularity, bad) in [
            (Granularity::Hour, "2024-01-03"),
            (Granularity::Hour, "2024-01-03T24"),
            (Granularity::Hour, "2024-01-03 05"),
            (Granularity::Hour, "2024-01-03T5x"),
            (Granularity::Hour, "2024-01-03T+5"),
            (Granularity::Hour, "2024-1-3T0012"),
            (Granularity::Hour, "2024-01-0éT1"),
            (Granularity::Day, "2024-01"),
            (Granularity::Month, "2024-13"),
            (Granularity::Month, "2024-01-01"),
        ] {
            let err = PartitionDate::parse_as(granularity, bad).unwrap_err();
            assert!(
                err.to_string().contains(granularity.pattern()),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn dates_and_timestamps_fall_in_their_period() {
        let of = |g, raw| PartitionDate::of_value(g, raw).map(|p| p.to_string());
        let hour = Granularity::Hour;
        for raw in [
            "2024-01-03 05:17:00",
            "2024-01-03 05:17:00.123456",
            "2024-01-03T05:17:00Z",
            "2024-01-03T05:17:00.000000Z",
            "2024-01-03T06:17:00+01:00",
            "2024-01-03T05",
        ] {
            assert_eq!(of(hour, raw).as_deref(), Some("2024-01-03T05"), "{raw}");
        }
        assert_eq!(
            of(Granularity::Day, "2024-01-03 23:59:59").as_deref(),
            Some("2024-01-03")
        );
        assert_eq!(
            of(Granularity::Month, "2024-01-03").as_deref(),
            Some("2024-01")
        );
        assert_eq!(of(hour, "2024-01-03").as_deref(), Some("2024-01-03T00"));
        for raw in ["", "yesterday", "2024/01/03", "__HIVE_DEFAULT_PARTITION__"] {
            assert_eq!(of(Granularity::Day, raw), None, "{raw}");
        }
    }

    #[test]
    fn periods_order_by_their_start() {
        let hour = |v| PartitionDate::parse_as(Granularity::Hour, v).unwrap();
        assert!(hour("2024-01-03T05") < hour("2024-01-03T06"));
        assert!(hour("2024-01-03T23") < PartitionDate::parse("2024-01-04").unwrap());
    }

    #[test]
    fn a_declared_format_names_reads_and_writes_the_stored_form() {
        let day = Partitioning::new("day", Granularity::Day)
            .with_format("%Y%m%d")
            .unwrap();
        let d = PartitionDate::parse("2024-05-03").unwrap();
        assert_eq!(day.name(d), "day=20240503");
        assert_eq!(day.value_of(d), "20240503");
        assert_eq!(day.parse_name("day=20240503").unwrap().date(), d);
        assert_eq!(day.parse_name("day=2024-05-03"), None);
        assert_eq!(day.parse_period("20240503"), Some(d));
        assert_eq!(day.parse_period("2024-05-03"), Some(d));
        assert_eq!(day.period_of(|_| Some(Some("20240503"))), Ok(d));
        assert!(day.period_of(|_| Some(Some("2024050"))).is_err());

        let slashed = Partitioning::new("dt", Granularity::Day)
            .with_format("%Y/%m/%d")
            .unwrap();
        assert_eq!(slashed.name(d), "dt=2024/05/03");
        assert_eq!(slashed.parse_name("dt=2024/05/03").unwrap().date(), d);

        let month = Partitioning::new("m", Granularity::Month)
            .with_format("%Y%m")
            .unwrap();
        let may = PartitionDate::parse_as(Granularity::Month, "2024-05").unwrap();
        assert_eq!(month.name(may), "m=202405");
        assert_eq!(month.period_of(|_| Some(Some("202405"))), Ok(may));

        let hour = Partitioning::new("h", Granularity::Hour)
            .with_format("%Y%m%d%H")
            .unwrap();
        let five = PartitionDate::parse_as(Granularity::Hour, "2024-05-03T05").unwrap();
        assert_eq!(hour.name(five), "h=2024050305");
        assert_eq!(hour.period_of(|_| Some(Some("2024050305"))), Ok(five));
    }

    #[test]
    fn a_format_that_cannot_hold_the_period_is_refused() {
        for (granularity, format, says) in [
            (Granularity::Day, "%Y%m", "the day"),
            (Granularity::Hour, "%Y%m%d", "the hour"),
            (Granularity::Month, "%m", "the year"),
        ] {
            let err = Partitioning::new("c", granularity)
                .with_format(format)
                .unwrap_err();
            assert!(err.contains(says), "{format}: {err}");
        }
    }
}
