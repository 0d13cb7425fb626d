//! Partition dates: the value of the partition column a run processes.

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
        format!("{column}={self}")
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
