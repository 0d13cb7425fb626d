//! Partitions: the dates a run processes, and the keys that name them.
//!
//! A [`PartitionKey`] is the only place where a partition's name, `column=YYYY-MM-DD`,
//! is written or read: in the state table, in `txn` app ids, in the output, and when
//! the detector's names of source partitions (`event_time=2024-01-03/region=eu`) are
//! mapped to the pipeline's partitions.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

use crate::error::Error;

/// A day partition, `YYYY-MM-DD`, checked when made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionDate(NaiveDate);

impl PartitionDate {
    /// Parses a strict `YYYY-MM-DD` date (chrono alone would accept `2024-1-3`).
    pub fn parse(value: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidDate {
            value: value.to_owned(),
        };
        if value.len() != 10 {
            return Err(invalid());
        }
        NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(PartitionDate)
            .map_err(|_| invalid())
    }

    /// The date.
    pub fn date(&self) -> NaiveDate {
        self.0
    }

    /// The partition's name in the table: `column=YYYY-MM-DD`.
    pub fn partition_name(&self, column: &str) -> String {
        PartitionKey::new(column, *self).to_string()
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

    /// The date.
    pub fn date(&self) -> PartitionDate {
        self.date
    }

    /// Reads a name this type wrote, `column=YYYY-MM-DD`; `None` for anything else
    /// (another column, another form).
    pub fn parse_name(column: &str, name: &str) -> Option<Self> {
        let value = name.strip_prefix(column)?.strip_prefix('=')?;
        PartitionDate::parse(value)
            .ok()
            .map(|date| PartitionKey::new(column, date))
    }

    /// The pipeline partition a source partition belongs to, from the source
    /// partition's values (`column -> raw value`, `None` for null): the value of
    /// `column`, whatever other columns the source is partitioned by.
    pub fn from_source_values<'a>(
        column: &str,
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
        PartitionDate::parse(value)
            .map(|date| PartitionKey::new(column, date))
            .map_err(|_| {
                unrecognised(format!(
                    "has {column:?} value {value:?}, which is not a date written YYYY-MM-DD"
                ))
            })
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.column, self.date)
    }
}

impl From<NaiveDate> for PartitionDate {
    fn from(date: NaiveDate) -> Self {
        PartitionDate(date)
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
        write!(f, "{}", self.0.format("%Y-%m-%d"))
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
        let key = PartitionKey::new("event_time", date("2024-01-03"));
        assert_eq!(key.to_string(), "event_time=2024-01-03");
        assert_eq!(
            PartitionKey::parse_name("event_time", &key.to_string()),
            Some(key)
        );
        assert_eq!(
            PartitionKey::parse_name("day", "event_time=2024-01-03"),
            None
        );
        assert_eq!(PartitionKey::parse_name("event_time", "event_time=x"), None);
    }

    #[test]
    fn a_source_partition_of_several_columns_maps_to_its_date() {
        let values = [("region", Some("eu")), ("event_time", Some("2024-01-01"))];
        let key = PartitionKey::from_source_values("event_time", "p", values).unwrap();
        assert_eq!(key.to_string(), "event_time=2024-01-01");
    }

    #[test]
    fn a_source_partition_that_is_no_date_says_why() {
        let cases = [
            (vec![("event_time", Some("2024/01/01"))], "not a date"),
            (vec![("event_time", None)], "null"),
            (vec![("region", Some("eu"))], "no value"),
        ];
        for (values, why) in cases {
            let err = PartitionKey::from_source_values("event_time", "p", values).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
    }
}
