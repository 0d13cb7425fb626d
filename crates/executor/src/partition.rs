//! Partitions: the dates a run processes, and the keys that name them.
//!
//! A [`PartitionKey`] is the only place where a partition's name, `column=YYYY-MM-DD`,
//! is written or read: in the state table, in `txn` app ids, in the output, and when
//! the detector's names of source partitions (`event_time=2024-01-03/region=eu`) are
//! mapped to the pipeline's partitions.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::error::Error;

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

    fn what(&self) -> &'static str {
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
    /// Parses a strict `YYYY-MM-DD` day (chrono alone would accept `2024-1-3`).
    pub fn parse(value: &str) -> Result<Self, Error> {
        Self::parse_as(Granularity::Day, value)
    }

    /// Parses a strict value of `granularity`: `YYYY-MM-DDTHH`, `YYYY-MM-DD` or
    /// `YYYY-MM`.
    pub fn parse_as(granularity: Granularity, value: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidDate {
            value: value.to_owned(),
            expected: granularity.what(),
        };
        if value.len() != granularity.pattern().len() {
            return Err(invalid());
        }
        // chrono alone accepts `2024-1-3`: every part must have its full width.
        let day = |text: &str| {
            (text.len() == 10)
                .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .flatten()
        };
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
            .or_else(|| {
                (raw.len() == 10)
                    .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
                    .flatten()
                    .map(|d| d.and_time(NaiveTime::MIN))
            })?;
        let start = match granularity {
            Granularity::Hour => instant.date().and_hms_opt(instant.hour(), 0, 0)?,
            Granularity::Day => instant.date().and_time(NaiveTime::MIN),
            Granularity::Month => instant.date().with_day(1)?.and_time(NaiveTime::MIN),
        };
        Some(PartitionDate { start, granularity })
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
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for PartitionDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = match self.granularity {
            Granularity::Hour => "%Y-%m-%dT%H",
            Granularity::Day => "%Y-%m-%d",
            Granularity::Month => "%Y-%m",
        };
        write!(f, "{}", self.start.format(format))
    }
}

/// One partition of a pipeline: its partition column and its date. Displays as
/// `column=YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    column: String,
    date: PartitionDate,
}

/// Why a source partition does not name a partition of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("source partition {partition} {reason}")]
pub struct UnrecognisedPartition {
    /// The source partition's name.
    pub partition: String,
    /// What is wrong with it, e.g. `has no value for column "event_time"`.
    pub reason: String,
}

impl PartitionKey {
    /// The partition of `column` at `date`.
    pub fn new(column: impl Into<String>, date: PartitionDate) -> Self {
        PartitionKey {
            column: column.into(),
            date,
        }
    }

    /// The partition column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The period.
    pub fn date(&self) -> PartitionDate {
        self.date
    }

    /// Reads a name this type wrote, `column=<value>` at `granularity`; `None` for
    /// anything else (another column, another form).
    pub fn parse_name(column: &str, granularity: Granularity, name: &str) -> Option<Self> {
        let value = name.strip_prefix(column)?.strip_prefix('=')?;
        PartitionDate::parse_as(granularity, value)
            .ok()
            .map(|date| PartitionKey::new(column, date))
    }

    /// The pipeline partition a source partition belongs to, from the source
    /// partition's values (`column -> raw value`, `None` for null): the value of
    /// `column`, whatever other columns the source is partitioned by.
    pub fn from_source_values<'a>(
        column: &str,
        granularity: Granularity,
        partition: &str,
        values: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self, UnrecognisedPartition> {
        let unrecognised = |reason: String| UnrecognisedPartition {
            partition: partition.to_owned(),
            reason,
        };
        let value = values
            .into_iter()
            .find(|(c, _)| *c == column)
            .ok_or_else(|| unrecognised(format!("has no value for column {column:?}")))?
            .1
            .ok_or_else(|| unrecognised(format!("has a null {column:?}")))?;
        PartitionDate::of_value(granularity, value)
            .map(|date| PartitionKey::new(column, date))
            .ok_or_else(|| {
                unrecognised(format!(
                    "has {column:?} value {value:?}, which is not {}",
                    granularity.what()
                ))
            })
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.column, self.date)
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
        ] {
            assert!(PartitionDate::parse(bad).is_err(), "{bad:?} accepted");
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
        let day = Granularity::Day;
        let key = PartitionKey::new("event_time", date("2024-01-03"));
        assert_eq!(key.to_string(), "event_time=2024-01-03");
        assert_eq!(
            PartitionKey::parse_name("event_time", day, &key.to_string()),
            Some(key)
        );
        assert_eq!(
            PartitionKey::parse_name("day", day, "event_time=2024-01-03"),
            None
        );
        assert_eq!(
            PartitionKey::parse_name("event_time", day, "event_time=x"),
            None
        );
        let hour = Granularity::Hour;
        let key = PartitionKey::parse_name("event_time", hour, "event_time=2024-01-03T05").unwrap();
        assert_eq!(key.to_string(), "event_time=2024-01-03T05");
        assert_eq!(
            PartitionKey::parse_name("event_time", hour, "event_time=2024-01-03"),
            None
        );
    }

    #[test]
    fn a_source_partition_of_several_columns_maps_to_its_date() {
        let values = [("region", Some("eu")), ("event_time", Some("2024-01-01"))];
        let key =
            PartitionKey::from_source_values("event_time", Granularity::Day, "p", values).unwrap();
        assert_eq!(key.to_string(), "event_time=2024-01-01");
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
        for (values, why) in cases {
            let err = PartitionKey::from_source_values("event_time", Granularity::Day, "p", values)
                .unwrap_err();
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
}
