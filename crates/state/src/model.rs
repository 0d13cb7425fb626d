//! The rows of the state table and their Arrow form.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;

/// Where a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A run holds the partition's lease and is processing it.
    Processing,
    /// Processed; `source_version` says at which source version.
    Processed,
    /// The last run failed; `last_error` says why.
    Failed,
}

impl Status {
    /// The name stored in the table.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Processed => "processed",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "processing" => Ok(Status::Processing),
            "processed" => Ok(Status::Processed),
            "failed" => Ok(Status::Failed),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

/// One partition's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionState {
    /// `col=value`.
    pub partition: String,
    /// Where it stands.
    pub status: Status,
    /// The source version it was last processed at; kept while it is reprocessed.
    pub source_version: Option<u64>,
    /// The fingerprint of the partition's source files at `source_version`.
    pub fingerprint: Option<String>,
    /// The version of the transform that processed it; `None` when unknown.
    pub transform: Option<String>,
    /// The run that last claimed it.
    pub run_id: String,
    /// Who last claimed it, `host:pid`.
    pub owner: String,
    /// Until when the claim holds; only meaningful while `processing`.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times it was claimed.
    pub attempts: u64,
    /// Why the last run failed.
    pub last_error: Option<String>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

impl PartitionState {
    /// Whether an unexpired lease holds the partition at `now`.
    pub fn is_leased(&self, now: DateTime<Utc>) -> bool {
        self.status == Status::Processing && self.lease_expires_at.is_some_and(|t| t > now)
    }
}

/// The name of the row that holds the detector's cursor (no `=`: never a partition).
pub(crate) const CURSOR_ROW: &str = "@detector-cursor";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The state table's schema. Rows are keyed by `pipeline` and `partition`; `detail`
/// carries the cursor's JSON on a pipeline's cursor row.
pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, true),
        Field::new("source_version", DataType::Int64, true),
        Field::new("fingerprint", DataType::Utf8, true),
        Field::new("run_id", DataType::Utf8, true),
        Field::new("owner", DataType::Utf8, true),
        Field::new("lease_expires_at", timestamp(), true),
        Field::new("attempts", DataType::Int64, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("updated_at", timestamp(), true),
        Field::new("detail", DataType::Utf8, true),
        Field::new("transform", DataType::Utf8, true),
    ]))
}

/// What the table holds for one pipeline: its partition rows and its cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    pub partitions: std::collections::BTreeMap<String, PartitionState>,
    pub cursor: Option<String>,
}

/// Everything the table holds, by pipeline.
pub(crate) type AllRows = std::collections::BTreeMap<String, Rows>;

/// Why the table's rows cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormatError {
    /// Written before rows recorded their pipeline: whose rows they are is unknown.
    NoPipelineColumn,
    /// Anything else, said in words.
    Malformed(String),
}

impl From<String> for FormatError {
    fn from(reason: String) -> Self {
        FormatError::Malformed(reason)
    }
}

impl From<&str> for FormatError {
    fn from(reason: &str) -> Self {
        FormatError::Malformed(reason.to_owned())
    }
}

fn micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

/// One row of the table: a partition's, or a pipeline's cursor.
enum Row<'a> {
    Partition(&'a PartitionState),
    Cursor(&'a str),
}

pub(crate) fn to_batch(all: &AllRows) -> RecordBatch {
    let mut rows: Vec<(&str, Row<'_>)> = Vec::new();
    for (pipeline, r) in all {
        rows.extend(
            r.partitions
                .values()
                .map(|p| (pipeline.as_str(), Row::Partition(p))),
        );
        if let Some(cursor) = &r.cursor {
            rows.push((pipeline.as_str(), Row::Cursor(cursor)));
        }
    }
    let n = rows.len();
    let part = |row: &Row<'_>, f: &dyn Fn(&PartitionState) -> Option<i64>| match row {
        Row::Partition(p) => f(p),
        Row::Cursor(_) => None,
    };
    let strings = |f: &dyn Fn(&PartitionState) -> Option<String>,
                   cursor: &dyn Fn(&str) -> Option<String>| {
        let v: Vec<Option<String>> = rows
            .iter()
            .map(|(_, row)| match row {
                Row::Partition(p) => f(p),
                Row::Cursor(c) => cursor(c),
            })
            .collect();
        Arc::new(StringArray::from(v)) as ArrayRef
    };
    let ints = |f: &dyn Fn(&PartitionState) -> Option<i64>| {
        let v: Vec<Option<i64>> = rows.iter().map(|(_, row)| part(row, f)).collect();
        Arc::new(Int64Array::from(v)) as ArrayRef
    };
    let times = |f: &dyn Fn(&PartitionState) -> Option<i64>| {
        let v: Vec<Option<i64>> = rows.iter().map(|(_, row)| part(row, f)).collect();
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef
    };
    let none = |_: &str| None;
    let pipelines: Vec<&str> = rows.iter().map(|(pipeline, _)| *pipeline).collect();
    let columns = vec![
        Arc::new(StringArray::from(pipelines)) as ArrayRef,
        strings(&|p| Some(p.partition.clone()), &|_| {
            Some(CURSOR_ROW.to_owned())
        }),
        strings(&|p| Some(p.status.to_string()), &none),
        ints(&|p| p.source_version.map(|v| v as i64)),
        strings(&|p| p.fingerprint.clone(), &none),
        strings(&|p| Some(p.run_id.clone()), &none),
        strings(&|p| Some(p.owner.clone()), &none),
        times(&|p| micros(p.lease_expires_at)),
        ints(&|p| Some(p.attempts as i64)),
        strings(&|p| p.last_error.clone(), &none),
        times(&|p| micros(Some(p.updated_at))),
        strings(&|_| None, &|c| Some(c.to_owned())),
        strings(&|p| p.transform.clone(), &none),
    ];
    debug_assert!(columns.iter().all(|c| c.len() == n));
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

pub(crate) fn from_batches(batches: &[RecordBatch]) -> Result<AllRows, FormatError> {
    let mut all = AllRows::new();
    for batch in batches {
        if batch.column_by_name("pipeline").is_none() {
            return Err(FormatError::NoPipelineColumn);
        }
        let col = |name: &str, t: &DataType| -> Result<ArrayRef, String> {
            let c = batch
                .column_by_name(name)
                .ok_or_else(|| format!("column {name} is missing"))?;
            cast(c, t).map_err(|e| format!("column {name}: {e}"))
        };
        let s = |name: &str| col(name, &DataType::Utf8);
        let i = |name: &str| col(name, &DataType::Int64);
        let t = |name: &str| col(name, &timestamp());
        let pipeline = s("pipeline")?;
        let (partition, status, version, fingerprint, run_id, owner) = (
            s("partition")?,
            s("status")?,
            i("source_version")?,
            s("fingerprint")?,
            s("run_id")?,
            s("owner")?,
        );
        let (lease, attempts, last_error, updated, detail) = (
            t("lease_expires_at")?,
            i("attempts")?,
            s("last_error")?,
            t("updated_at")?,
            s("detail")?,
        );
        // Added after the pipeline column: absent from tables written before it.
        let transform = match batch.column_by_name("transform") {
            Some(_) => Some(s("transform")?),
            None => None,
        };
        let text = |a: &ArrayRef, r: usize| {
            let a = a.as_string::<i32>();
            a.is_valid(r).then(|| a.value(r).to_owned())
        };
        let int = |a: &ArrayRef, r: usize| {
            let a = a.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
            a.is_valid(r).then(|| a.value(r))
        };
        let time = |a: &ArrayRef, r: usize| {
            let a = a.as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>();
            a.is_valid(r)
                .then(|| DateTime::from_timestamp_micros(a.value(r)))
                .flatten()
        };
        for r in 0..batch.num_rows() {
            let name = text(&partition, r).ok_or("a row has no partition")?;
            let pipeline = text(&pipeline, r).ok_or("a row has no pipeline")?;
            let rows = all.entry(pipeline.clone()).or_default();
            if name == CURSOR_ROW {
                rows.cursor = text(&detail, r);
                continue;
            }
            let state = PartitionState {
                status: text(&status, r)
                    .ok_or_else(|| format!("{name}: no status"))?
                    .parse()?,
                source_version: int(&version, r).map(|v| v as u64),
                fingerprint: text(&fingerprint, r),
                transform: transform.as_ref().and_then(|t| text(t, r)),
                run_id: text(&run_id, r).unwrap_or_default(),
                owner: text(&owner, r).unwrap_or_default(),
                lease_expires_at: time(&lease, r),
                attempts: int(&attempts, r).unwrap_or_default() as u64,
                last_error: text(&last_error, r),
                updated_at: time(&updated, r).unwrap_or_default(),
                partition: name.clone(),
            };
            if rows.partitions.insert(name.clone(), state).is_some() {
                return Err(format!("pipeline {pipeline}: partition {name} has two rows").into());
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_the_arrow_round_trip() {
        let now = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let mut rows = Rows::default();
        for (i, status) in [Status::Processing, Status::Processed, Status::Failed]
            .into_iter()
            .enumerate()
        {
            let p = PartitionState {
                partition: format!("event_time=2024-01-0{i}"),
                status,
                source_version: (i > 0).then_some(i as u64 * 7),
                fingerprint: Some("abc".into()),
                transform: (i != 1).then(|| "sql:1".into()),
                run_id: "r1".into(),
                owner: "host:1".into(),
                lease_expires_at: (i == 0).then_some(now),
                attempts: i as u64,
                last_error: (i == 2).then(|| "boom".into()),
                updated_at: now,
            };
            rows.partitions.insert(p.partition.clone(), p);
        }
        rows.cursor = Some("{\"version\":3}".into());
        let mut other = rows.clone();
        other.cursor = None;
        other.partitions.retain(|_, p| p.status == Status::Failed);
        let all: AllRows = [("a".to_owned(), rows), ("b".to_owned(), other)].into();
        let back = from_batches(&[to_batch(&all)]).unwrap();
        assert_eq!(back, all);
    }
}
