//! The rows of the state table and their Arrow form.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use deltalake::arrow::compute::{cast, concat_batches, filter_record_batch};
use deltalake::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use latefill_core::{PartitionKey, Partitioning, TableVersion};
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
    /// The partition.
    pub partition: PartitionKey,
    /// Where it stands.
    pub status: Status,
    /// The source version it was last processed at; kept while it is reprocessed.
    pub source_version: Option<TableVersion>,
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
    /// What the last completed run recorded of itself, as JSON (the `detail`
    /// column): its strategy, rows, duration and audit warnings.
    pub detail: Option<String>,
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
/// carries the cursor's JSON on a pipeline's cursor row, and the last run's details
/// on a partition's.
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

/// One pipeline's rows: its partitions and its cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    pub partitions: BTreeMap<PartitionKey, PartitionState>,
    pub cursor: Option<String>,
}

/// Everything the table holds, as one pipeline sees it: its own rows, read; and the
/// rows it does not read, kept as they were to be written back unchanged (other
/// pipelines' rows, and its own rows that name no partition of its partitioning
/// because that changed since they were written).
#[derive(Debug, Clone, Default)]
pub(crate) struct AllRows {
    pub mine: Rows,
    /// The names of the pipeline's rows that name none of its partitions.
    pub unrecognised: Vec<String>,
    /// The rows not read, in the table's schema.
    pub kept: Vec<RecordBatch>,
}

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

/// The table's whole content: `pipeline`'s rows, then the rows kept unread.
pub(crate) fn to_batch(pipeline: &str, all: &AllRows) -> Result<RecordBatch, FormatError> {
    let mine = rows_batch(pipeline, &all.mine);
    if all.kept.is_empty() {
        return Ok(mine);
    }
    let batches: Vec<RecordBatch> = std::iter::once(mine)
        .chain(all.kept.iter().cloned())
        .collect();
    concat_batches(&schema(), &batches)
        .map_err(|e| FormatError::Malformed(format!("keeping other rows: {e}")))
}

fn rows_batch(pipeline: &str, mine: &Rows) -> RecordBatch {
    let mut rows: Vec<Row<'_>> = mine.partitions.values().map(Row::Partition).collect();
    if let Some(cursor) = &mine.cursor {
        rows.push(Row::Cursor(cursor));
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
            .map(|row| match row {
                Row::Partition(p) => f(p),
                Row::Cursor(c) => cursor(c),
            })
            .collect();
        Arc::new(StringArray::from(v)) as ArrayRef
    };
    let ints = |f: &dyn Fn(&PartitionState) -> Option<i64>| {
        let v: Vec<Option<i64>> = rows.iter().map(|row| part(row, f)).collect();
        Arc::new(Int64Array::from(v)) as ArrayRef
    };
    let times = |f: &dyn Fn(&PartitionState) -> Option<i64>| {
        let v: Vec<Option<i64>> = rows.iter().map(|row| part(row, f)).collect();
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef
    };
    let none = |_: &str| None;
    let columns = vec![
        Arc::new(StringArray::from(vec![pipeline; n])) as ArrayRef,
        strings(&|p| Some(p.partition.to_string()), &|_| {
            Some(CURSOR_ROW.to_owned())
        }),
        strings(&|p| Some(p.status.to_string()), &none),
        ints(&|p| p.source_version.map(|v| v.get() as i64)),
        strings(&|p| p.fingerprint.clone(), &none),
        strings(&|p| Some(p.run_id.clone()), &none),
        strings(&|p| Some(p.owner.clone()), &none),
        times(&|p| micros(p.lease_expires_at)),
        ints(&|p| Some(p.attempts as i64)),
        strings(&|p| p.last_error.clone(), &none),
        times(&|p| micros(Some(p.updated_at))),
        strings(&|p| p.detail.clone(), &|c| Some(c.to_owned())),
        strings(&|p| p.transform.clone(), &none),
    ];
    debug_assert!(columns.iter().all(|c| c.len() == n));
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

/// `batch` in the table's current schema: columns added since it was written (the
/// `transform` column) are null.
fn in_current_schema(batch: &RecordBatch) -> Result<RecordBatch, String> {
    let schema = schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(c) => {
                cast(c, field.data_type()).map_err(|e| format!("column {}: {e}", field.name()))
            }
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), batch.num_rows())),
            None => Err(format!("column {} is missing", field.name())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// Reads `pipeline`'s rows from the table's `batches`, naming its partitions by
/// `partitioning`; every other row is kept as it is.
pub(crate) fn from_batches(
    batches: &[RecordBatch],
    pipeline: &str,
    partitioning: &Partitioning,
) -> Result<AllRows, FormatError> {
    let mut all = AllRows::default();
    for batch in batches {
        if batch.column_by_name("pipeline").is_none() {
            return Err(FormatError::NoPipelineColumn);
        }
        let batch = in_current_schema(batch)?;
        let col = |name: &str| batch.column_by_name(name).expect("in the current schema");
        let text = |name: &str, r: usize| {
            let a = col(name).as_string::<i32>();
            a.is_valid(r).then(|| a.value(r).to_owned())
        };
        let int = |name: &str, r: usize| {
            let a = col(name).as_primitive::<Int64Type>();
            a.is_valid(r).then(|| a.value(r))
        };
        let time = |name: &str, r: usize| {
            let a = col(name).as_primitive::<TimestampMicrosecondType>();
            a.is_valid(r)
                .then(|| DateTime::from_timestamp_micros(a.value(r)))
                .flatten()
        };
        let pipelines = col("pipeline").as_string::<i32>();
        let mut unread = Vec::with_capacity(batch.num_rows());
        for r in 0..batch.num_rows() {
            if !pipelines.is_valid(r) {
                return Err("a row has no pipeline".into());
            }
            if pipelines.value(r) != pipeline {
                unread.push(true);
                continue;
            }
            let name = text("partition", r).ok_or("a row has no partition")?;
            if name == CURSOR_ROW {
                all.mine.cursor = text("detail", r);
                unread.push(false);
                continue;
            }
            let Some(key) = partitioning.parse_name(&name) else {
                // Written under another partitioning of the pipeline (its column,
                // granularity or format changed since): nothing plans it any more.
                all.unrecognised.push(name);
                unread.push(true);
                continue;
            };
            unread.push(false);
            let state = PartitionState {
                status: text("status", r)
                    .ok_or_else(|| format!("{name}: no status"))?
                    .parse()?,
                source_version: int("source_version", r).map(|v| TableVersion::new(v as u64)),
                fingerprint: text("fingerprint", r),
                transform: text("transform", r),
                run_id: text("run_id", r).unwrap_or_default(),
                owner: text("owner", r).unwrap_or_default(),
                lease_expires_at: time("lease_expires_at", r),
                attempts: int("attempts", r).unwrap_or_default() as u64,
                last_error: text("last_error", r),
                detail: text("detail", r),
                updated_at: time("updated_at", r).unwrap_or_default(),
                partition: key.clone(),
            };
            if all.mine.partitions.insert(key, state).is_some() {
                return Err(format!("pipeline {pipeline}: partition {name} has two rows").into());
            }
        }
        if unread.iter().any(|&u| u) {
            let kept = filter_record_batch(&batch, &BooleanArray::from(unread))
                .map_err(|e| format!("keeping other rows: {e}"))?;
            all.kept.push(kept);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latefill_core::{Granularity, PartitionDate};

    #[test]
    fn rows_survive_the_arrow_round_trip_and_other_rows_are_kept_as_they_were() {
        let days = Partitioning::new("event_time", Granularity::Day);
        let now = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let mut rows = Rows::default();
        for (i, status) in [Status::Processing, Status::Processed, Status::Failed]
            .into_iter()
            .enumerate()
        {
            let date = PartitionDate::parse(&format!("2024-01-0{}", i + 1)).unwrap();
            let p = PartitionState {
                partition: days.key(date),
                status,
                source_version: (i > 0).then_some(TableVersion::new(i as u64 * 7)),
                fingerprint: Some("abc".into()),
                transform: (i != 1).then(|| "sql:1".into()),
                run_id: "r1".into(),
                owner: "host:1".into(),
                lease_expires_at: (i == 0).then_some(now),
                attempts: i as u64,
                last_error: (i == 2).then(|| "boom".into()),
                detail: (i == 1).then(|| "{\"rows_read\":3}".into()),
                updated_at: now,
            };
            rows.partitions.insert(p.partition.clone(), p);
        }
        rows.cursor = Some("{\"version\":3}".into());
        let mut other = rows.clone();
        other.cursor = None;
        other.partitions.retain(|_, p| p.status == Status::Failed);

        // Pipeline b's rows, then a's written beside them.
        let b = AllRows {
            mine: other.clone(),
            ..AllRows::default()
        };
        let table = to_batch("b", &b).unwrap();
        let mut a = from_batches(&[table], "a", &days).unwrap();
        assert_eq!(a.mine, Rows::default());
        a.mine = rows.clone();
        let table = to_batch("a", &a).unwrap();

        let back = from_batches(std::slice::from_ref(&table), "a", &days).unwrap();
        assert_eq!(back.mine, rows);
        assert!(back.unrecognised.is_empty());
        let back = from_batches(std::slice::from_ref(&table), "b", &days).unwrap();
        assert_eq!(back.mine, other);

        // Read under another partitioning, a's rows name none of its partitions: they
        // are listed, kept, and written back unchanged.
        let hours = Partitioning::new("event_hour", Granularity::Hour);
        let moved = from_batches(std::slice::from_ref(&table), "a", &hours).unwrap();
        assert_eq!(moved.mine.partitions.len(), 0);
        assert_eq!(moved.mine.cursor, rows.cursor);
        assert_eq!(moved.unrecognised.len(), 3);
        let table = to_batch("a", &moved).unwrap();
        let back = from_batches(&[table], "a", &days).unwrap();
        assert_eq!(back.mine, rows);
    }
}
