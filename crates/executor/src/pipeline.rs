//! The pipeline declaration: which source, which transform, which target.
//!
//! A pipeline is a TOML file:
//!
//! ```toml
//! name = "devices_daily"
//!
//! [source]
//! table = "devices"              # path (relative to this file) or URL
//! partition_column = "event_time"
//! granularity = "day"            # or "hour" (YYYY-MM-DDTHH), "month" (YYYY-MM)
//! # hour_column = "event_hour"   # hours split over two columns: the day, then this
//!
//! [target]
//! table = "devices_daily"
//!
//! [state]
//! table = "latefill_state"
//! retention = "7 days"           # old state commits and files kept this long (optional)
//!
//! [transform]
//! # The rows of the partition being processed are the table `source`.
//! sql = "SELECT type, version, count(*) AS devices, event_time FROM source GROUP BY type, version, event_time"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::audit::{Audit, Check, Severity, parse_compare};
use crate::error::{Error, Result};
use crate::strategy::Strategy;
use crate::transform::Transform;
use latefill_core::storage::StorageOptions;

use latefill_core::partition::{Granularity, PartitionDate, PartitionKey, Partitioning};

/// The default pipeline's file, as `latefill init` writes it.
pub const DEFAULT_PIPELINE_TOML: &str = r#"# latefill pipeline: reprocesses one partition of `source` into `target` with SQL.
# Relative table paths are resolved against the directory of this file.

# Names the pipeline; it is part of the Delta application-transaction id written to
# the target, so keep it stable once data has been written.
name = "devices_daily"

[source]
# The Delta table to read, a path or a URL (file:///...).
table = "latefill-demo/devices"
# The column the source is partitioned by; `--date` picks one of its values.
partition_column = "event_time"
# How long one partition lasts: "day" (values YYYY-MM-DD), "hour" (YYYY-MM-DDTHH) or
# "month" (YYYY-MM). The source may be partitioned by more columns than this one.
granularity = "day"
# Hours kept in two columns, the date in partition_column and the hour of the day
# (0 to 23) in another, take granularity = "hour" and:
# hour_column = "event_hour"
# A column that holds its periods in another form, such as an integer day 20240503
# or a string 2024/05/03, declares it as a strftime pattern:
# partition_format = "%Y%m%d"

[target]
# The Delta table to write, partitioned by the same column. Created on first run.
table = "latefill-demo/devices_daily"

[state]
# The Delta table where latefill records what it processed.
table = "latefill-demo/latefill_state"
# How long it keeps old commits and replaced files; latefill itself reads only its
# latest version. "<n> seconds|minutes|hours|days".
retention = "7 days"

[transform]
# DataFusion SQL. The partition's rows are the table `source`; the result must carry
# the partition column. It replaces exactly that partition of the target.
sql = """
SELECT type, version, count(*) AS devices, event_time
FROM source
GROUP BY type, version, event_time
"""
"#;

/// A validated pipeline declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// The pipeline's name: letters, digits, `_` and `-`.
    pub name: String,
    /// The source table.
    pub source: Url,
    /// How the source's (and target's) partitions hold the period:
    /// `source.partition_column`, `source.granularity` (default a day) and
    /// `source.hour_column`.
    pub partitioning: Partitioning,
    /// The target table.
    pub target: Url,
    /// The state table.
    pub state: Url,
    /// How long the state table keeps old commits and replaced files
    /// (`state.retention`); `None` leaves it to the state table's default (a week).
    pub state_retention: Option<Duration>,
    /// What the pipeline computes from a partition: `transform.sql` in a pipeline
    /// file; a program embedding latefill may give a Rust function instead.
    pub transform: Transform,
    /// Which strategies a late partition's run may use (`transform.strategy`:
    /// `"auto"`, the default, `"replace"` or `"incremental"`).
    pub strategy: Strategy,
    /// Checks of each partition's result before it is published (`[[audit]]`).
    pub audits: Vec<Audit>,
    /// The most memory, in bytes, the transform's DataFusion session may hold at
    /// once (`transform.memory_limit`); sorts and aggregations spill to a temporary
    /// directory beyond it. `None`: no bound.
    pub memory_limit: Option<u64>,
    /// Store options for the source: `[storage]`, then `[source.storage]`.
    pub source_storage: StorageOptions,
    /// Store options for the target: `[storage]`, then `[target.storage]`.
    pub target_storage: StorageOptions,
    /// Store options for the state table: `[storage]`, then `[state.storage]`.
    pub state_storage: StorageOptions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    source: RawSource,
    target: RawTable,
    state: RawState,
    transform: RawTransform,
    storage: Option<RawStorage>,
    audit: Option<Vec<RawAudit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    name: Option<String>,
    severity: Option<String>,
    not_null: Option<Vec<String>>,
    unique: Option<Vec<String>>,
    accepted_values: Option<RawAcceptedValues>,
    row_count: Option<RawRowCount>,
    compare: Option<String>,
    sql: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcceptedValues {
    column: String,
    values: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRowCount {
    min: Option<u64>,
    max: Option<u64>,
}

/// The `[[audit]]` entries of a pipeline file, validated.
fn audits(raw: Vec<RawAudit>) -> std::result::Result<Vec<Audit>, String> {
    let mut audits: Vec<Audit> = Vec::with_capacity(raw.len());
    for (i, a) in raw.into_iter().enumerate() {
        let at = format!(
            "audit {} ({})",
            i + 1,
            a.name.as_deref().unwrap_or("unnamed")
        );
        let columns = |kind: &str, columns: Vec<String>| {
            if columns.is_empty() || columns.iter().any(|c| c.trim().is_empty()) {
                Err(format!(
                    "{at}: {kind} needs a list of column names, e.g. {kind} = [\"type\"]"
                ))
            } else {
                Ok(columns)
            }
        };
        let mut checks = Vec::new();
        if let Some(c) = a.not_null {
            checks.push(Check::NotNull(columns("not_null", c)?));
        }
        if let Some(c) = a.unique {
            checks.push(Check::Unique(columns("unique", c)?));
        }
        if let Some(v) = a.accepted_values {
            let values = v
                .values
                .into_iter()
                .map(|value| match value {
                    toml::Value::String(s) => Ok(s),
                    toml::Value::Integer(n) => Ok(n.to_string()),
                    toml::Value::Float(x) => Ok(x.to_string()),
                    toml::Value::Boolean(b) => Ok(b.to_string()),
                    other => Err(format!(
                        "{at}: accepted_values.values holds {other}, which is no string, number or boolean"
                    )),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if values.is_empty() {
                return Err(format!("{at}: accepted_values.values is empty"));
            }
            checks.push(Check::AcceptedValues {
                column: v.column,
                values,
            });
        }
        if let Some(RawRowCount { min, max }) = a.row_count {
            if min.is_none() && max.is_none() || min.zip(max).is_some_and(|(a, b)| a > b) {
                return Err(format!(
                    "{at}: row_count needs min, max or both, min at most max: e.g. row_count = {{ min = 1 }}"
                ));
            }
            checks.push(Check::RowCount { min, max });
        }
        if let Some(text) = a.compare {
            let (l, op, r) = parse_compare(&text).map_err(|e| format!("{at}: compare {e}"))?;
            checks.push(Check::Compare(l, op, r));
        }
        if let Some(sql) = a.sql {
            if sql.trim().is_empty() {
                return Err(format!("{at}: sql is empty"));
            }
            checks.push(Check::Sql(sql));
        }
        let check = match checks.len() {
            1 => checks.remove(0),
            0 => {
                return Err(format!(
                    "{at} checks nothing: give one of not_null, unique, accepted_values, \
                     row_count, compare or sql"
                ));
            }
            _ => {
                return Err(format!(
                    "{at} has {} checks: give one per [[audit]] entry",
                    checks.len()
                ));
            }
        };
        let severity = match a.severity.as_deref() {
            None | Some("error") => Severity::Error,
            Some("warn") => Severity::Warn,
            Some(other) => {
                return Err(format!(
                    "{at}: severity {other:?}: use \"error\" (the partition fails, the target is \
                     untouched) or \"warn\" (published, the failure reported)"
                ));
            }
        };
        let name = a.name.unwrap_or_else(|| Audit::default_name(&check));
        if audits.iter().any(|other| other.name == name) {
            return Err(format!(
                "{at}: another audit is named {name:?}: give each a name of its own"
            ));
        }
        audits.push(Audit {
            name,
            check,
            severity,
        });
    }
    Ok(audits)
}

/// Store options as the file gives them: strings, numbers or booleans.
type RawStorage = std::collections::BTreeMap<String, toml::Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    table: String,
    partition_column: String,
    granularity: Option<String>,
    hour_column: Option<String>,
    partition_format: Option<String>,
    storage: Option<RawStorage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    table: String,
    storage: Option<RawStorage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    table: String,
    retention: Option<String>,
    storage: Option<RawStorage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    sql: String,
    strategy: Option<String>,
    memory_limit: Option<RawBytes>,
}

/// A size in a pipeline file: `"256MB"` or a number of bytes.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawBytes {
    Bytes(u64),
    Text(String),
}

impl Pipeline {
    /// Reads and validates a pipeline file; relative table paths are resolved against
    /// the file's directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (text, dir) = read_config(path)?;
        Self::from_toml(&text, &dir).map_err(|e| match e {
            Error::ConfigInvalid { message, .. } => Error::ConfigInvalid {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses a pipeline from TOML text; relative table paths are resolved against
    /// `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self> {
        let invalid = |message: String| Error::ConfigInvalid {
            path: PathBuf::from("<text>"),
            message,
        };
        let raw: RawPipeline = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        Self::from_raw(raw, base_dir)
    }

    /// Parses one `[[pipeline]]` table of a project file.
    pub(crate) fn from_toml_value(value: toml::Value, base_dir: &Path) -> Result<Self> {
        let raw: RawPipeline =
            value
                .try_into()
                .map_err(|e: toml::de::Error| Error::ConfigInvalid {
                    path: PathBuf::from("<text>"),
                    message: e.to_string(),
                })?;
        Self::from_raw(raw, base_dir)
    }

    /// Validates a parsed pipeline.
    fn from_raw(raw: RawPipeline, base_dir: &Path) -> Result<Self> {
        let invalid = |message: String| Error::ConfigInvalid {
            path: PathBuf::from("<text>"),
            message,
        };
        if raw.source.partition_column.trim().is_empty() {
            return Err(invalid("source.partition_column is empty".into()));
        }
        let granularity = match &raw.source.granularity {
            Some(text) => text
                .parse()
                .map_err(|reason| invalid(format!("source.granularity: {reason}")))?,
            None => Granularity::Day,
        };
        let mut partitioning = Partitioning::new(raw.source.partition_column, granularity);
        if let Some(hour_column) = raw.source.hour_column {
            if granularity != Granularity::Hour {
                return Err(invalid(format!(
                    "source.hour_column {hour_column:?} needs granularity = \"hour\", not \"{granularity}\": \
                     it holds the hour of the day whose date is in source.partition_column"
                )));
            }
            if hour_column.trim().is_empty() || hour_column == partitioning.column() {
                return Err(invalid(format!(
                    "source.hour_column {hour_column:?} must name a column other than source.partition_column"
                )));
            }
            partitioning = partitioning.with_hour_column(hour_column);
        }
        if let Some(format) = raw.source.partition_format {
            partitioning = partitioning
                .with_format(format)
                .map_err(|reason| invalid(format!("source.{reason}")))?;
        }
        if raw.transform.sql.trim().is_empty() {
            return Err(invalid("transform.sql is empty".into()));
        }
        let common = storage_options("storage", raw.storage.as_ref()).map_err(&invalid)?;
        let per_table = |section: &str, raw: Option<&RawStorage>| {
            storage_options(&format!("{section}.storage"), raw)
                .map(|own| common.merged(&own))
                .map_err(&invalid)
        };
        let source_storage = per_table("source", raw.source.storage.as_ref())?;
        let target_storage = per_table("target", raw.target.storage.as_ref())?;
        let state_storage = per_table("state", raw.state.storage.as_ref())?;
        let mut pipeline = Pipeline::new(
            raw.name,
            resolve_location("source", &raw.source.table, base_dir)?,
            partitioning,
            resolve_location("target", &raw.target.table, base_dir)?,
            resolve_location("state", &raw.state.table, base_dir)?,
            Transform::Sql(raw.transform.sql),
        )?;
        pipeline.state_retention = match &raw.state.retention {
            Some(text) => Some(
                parse_retention(text)
                    .map_err(|reason| invalid(format!("state.retention {text:?}: {reason}")))?,
            ),
            None => None,
        };
        pipeline.audits = audits(raw.audit.unwrap_or_default()).map_err(&invalid)?;
        if let Some(text) = &raw.transform.strategy {
            pipeline.strategy = text
                .parse()
                .map_err(|reason| invalid(format!("transform.strategy: {reason}")))?;
        }
        pipeline.memory_limit = match &raw.transform.memory_limit {
            Some(RawBytes::Text(text)) => {
                Some(parse_memory_limit(text).map_err(|reason| {
                    invalid(format!("transform.memory_limit {text:?}: {reason}"))
                })?)
            }
            Some(RawBytes::Bytes(0)) => {
                return Err(invalid(
                    "transform.memory_limit 0: must be more than 0 bytes, e.g. \"512MB\"".into(),
                ));
            }
            Some(RawBytes::Bytes(bytes)) => Some(*bytes),
            None => None,
        };
        pipeline.source_storage = source_storage;
        pipeline.target_storage = target_storage;
        pipeline.state_storage = state_storage;
        Ok(pipeline)
    }

    /// A pipeline made in code: `name` (letters, digits, `_` and `-`), the three
    /// tables, how the source's partitions hold the period, and the transform; store
    /// options from the environment only (see [`Pipeline::with_storage`]).
    ///
    /// ```
    /// use latefill_core::{Granularity, Partitioning};
    /// use latefill_executor::{Pipeline, Transform};
    /// use url::Url;
    ///
    /// let pipeline = Pipeline::new(
    ///     "devices_daily",
    ///     Url::parse("s3://lake/events/devices/")?,
    ///     Partitioning::new("event_time", Granularity::Day),
    ///     Url::parse("s3://lake/marts/devices_daily/")?,
    ///     Url::parse("s3://lake/latefill/state/")?,
    ///     Transform::Sql("SELECT type, count(*) AS n, event_time FROM source GROUP BY type, event_time".into()),
    /// )?;
    /// assert_eq!(pipeline.partition_name("2024-01-03".parse()?), "event_time=2024-01-03");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        name: impl Into<String>,
        source: Url,
        partitioning: Partitioning,
        target: Url,
        state: Url,
        transform: Transform,
    ) -> Result<Self> {
        let name = name.into();
        let invalid = |message: String| Error::ConfigInvalid {
            path: PathBuf::from("<pipeline>"),
            message,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(format!(
                "name {name:?} must be non-empty and use only letters, digits, '_' and '-'"
            )));
        }
        if source == target {
            return Err(invalid(format!(
                "source and target are the same table ({source}); a pipeline must write elsewhere"
            )));
        }
        Ok(Pipeline {
            name,
            source,
            partitioning,
            target,
            state,
            state_retention: None,
            transform,
            strategy: Strategy::Auto,
            audits: Vec::new(),
            memory_limit: None,
            source_storage: StorageOptions::default(),
            target_storage: StorageOptions::default(),
            state_storage: StorageOptions::default(),
        })
    }

    /// This pipeline with `options` for all three of its tables' stores.
    pub fn with_storage(mut self, options: StorageOptions) -> Self {
        self.source_storage = options.clone();
        self.target_storage = options.clone();
        self.state_storage = options;
        self
    }

    /// The default devices pipeline, with its tables under `base_dir`.
    pub fn default_devices(base_dir: &Path) -> Result<Self> {
        Self::from_toml(DEFAULT_PIPELINE_TOML, base_dir)
    }

    /// The transform's version ([`Transform::version`]). Each processed partition
    /// records it; a partition processed by another version is stale.
    pub fn transform_version(&self) -> String {
        self.transform.version()
    }

    /// This pipeline with another transform, e.g. a Rust one.
    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = transform;
        self
    }

    /// Parses a partition value (`--date`, `--from`, `--to`) at this pipeline's
    /// granularity: the period (`2024-01-03`), or the partition's name as the plan
    /// file, JSON output and `status` print it (`event_time=2024-01-03`,
    /// `event_date=2024-01-03/event_hour=05`).
    pub fn parse_date(&self, value: &str) -> Result<PartitionDate> {
        if !value.contains('=') {
            return match self.partitioning.parse_period(value) {
                Some(date) => Ok(date),
                // Says what the period's own form is.
                None => Ok(PartitionDate::parse_as(
                    self.partitioning.granularity(),
                    value,
                )?),
            };
        }
        match self.partitioning.parse_name(value) {
            Some(key) => Ok(key.date()),
            None => Err(Error::InvalidPartitionName {
                value: value.to_owned(),
                pipeline: self.name.clone(),
                expected: self
                    .partition_name(PartitionDate::example(self.partitioning.granularity())),
            }),
        }
    }

    /// The name of the partition of `date`, as the state table and the output give it
    /// ([`Partitioning::name`]).
    pub fn partition_name(&self, date: PartitionDate) -> String {
        self.partitioning.name(date)
    }

    /// The Delta application-transaction id that the target's commits carry for
    /// `partition`, e.g. `latefill/devices_daily/event_time=2024-01-03`.
    pub fn app_id(&self, partition: &PartitionKey) -> String {
        format!("latefill/{}/{}", self.name, partition)
    }
}

/// The example pipeline `latefill init` writes: [`DEFAULT_PIPELINE_TOML`] for days;
/// for hours, the same devices pipeline over `latefill-demo/devices_hourly`, with
/// partitions written `YYYY-MM-DDTHH`.
pub fn example_pipeline_toml(granularity: Granularity) -> String {
    match granularity {
        Granularity::Day => DEFAULT_PIPELINE_TOML.to_owned(),
        other => {
            let suffix = match other {
                Granularity::Hour => "hourly",
                _ => "monthly",
            };
            DEFAULT_PIPELINE_TOML
                .replace("\"devices_daily\"", &format!("\"devices_{suffix}_counts\""))
                .replace(
                    "latefill-demo/devices_daily",
                    &format!("latefill-demo/devices_{suffix}_counts"),
                )
                .replace(
                    "latefill-demo/devices\"",
                    &format!("latefill-demo/devices_{suffix}\""),
                )
                .replace(
                    "latefill-demo/latefill_state",
                    &format!("latefill-demo/latefill_state_{suffix}"),
                )
                .replace(
                    "granularity = \"day\"",
                    &format!("granularity = \"{other}\""),
                )
        }
    }
}

/// A `[storage]` table's options as strings; nested tables and arrays are errors.
fn storage_options(
    section: &str,
    raw: Option<&RawStorage>,
) -> std::result::Result<StorageOptions, String> {
    let mut options = StorageOptions::new();
    for (key, value) in raw.into_iter().flatten() {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(format!(
                    "{section}.{key} is a {}; store options are strings, numbers or booleans",
                    other.type_str()
                ));
            }
        };
        options = options.with(key.clone(), text);
    }
    Ok(options)
}

/// Parses `"<n> <unit>"`, the unit one of seconds, minutes, hours, days (or singular).
pub fn parse_retention(text: &str) -> std::result::Result<Duration, String> {
    let expected = "expected a whole number and a unit, e.g. \"7 days\", \"12 hours\"";
    let mut words = text.split_whitespace();
    let (Some(number), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(expected.into());
    };
    let number: u64 = number.parse().map_err(|_| expected.to_owned())?;
    let seconds = match unit.trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}; {expected}")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| "too long".to_owned())
}

/// Parses a memory size: a whole or decimal number and a unit, `B`, `KB`, `MB`,
/// `GB` or `TB` (each 1024 of the one before, as DataFusion and most memory settings
/// count them; `KiB`, `MiB`, ... and `K`, `M`, ... are the same), e.g. `"256MB"`,
/// `"1.5 GB"`; a bare number is bytes.
///
/// ```
/// use latefill_executor::parse_memory_limit;
/// assert_eq!(parse_memory_limit("256MB"), Ok(256 * 1024 * 1024));
/// assert_eq!(parse_memory_limit("1.5 GiB"), Ok(3 * 512 * 1024 * 1024));
/// assert!(parse_memory_limit("0").is_err());
/// ```
pub fn parse_memory_limit(text: &str) -> std::result::Result<u64, String> {
    let expected = "expected a size such as \"256MB\", \"2GB\" or a number of bytes";
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| expected.to_owned())?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("unknown unit {:?}; {expected}", unit.trim())),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err("too large".into());
    }
    if bytes < 1.0 {
        return Err(format!("must be more than 0 bytes; {expected}"));
    }
    Ok(bytes as u64)
}

/// The text of a configuration file and the directory its relative paths resolve
/// against.
pub(crate) fn read_config(path: &Path) -> Result<(String, PathBuf)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
        path: path.to_owned(),
        source,
    })?;
    let dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((text, dir))
}

/// Resolves a table location: a URL as is, a path against `base_dir`.
pub fn resolve_location(role: &'static str, location: &str, base_dir: &Path) -> Result<Url> {
    let invalid = |reason: &str| Error::InvalidLocation {
        role,
        location: location.to_owned(),
        reason: reason.to_owned(),
    };
    if location.trim().is_empty() {
        return Err(invalid("the location is empty"));
    }
    // A one-letter "scheme" is a Windows drive, not a URL.
    if let Ok(url) = Url::parse(location)
        && url.scheme().len() > 1
    {
        return Ok(url);
    }
    let path = Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let base = if base_dir.is_absolute() {
            base_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|_| invalid("cannot read the current directory"))?
                .join(base_dir)
        };
        base.join(path)
    };
    Url::from_directory_path(normalize(&absolute)).map_err(|()| invalid("not a directory path"))
}

/// Removes `.` and `..` components without touching the file system (the table may
/// not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pipeline_parses_and_resolves_relative_paths() {
        let p = Pipeline::default_devices(Path::new("/data/x")).unwrap();
        assert_eq!(p.name, "devices_daily");
        assert_eq!(p.source.as_str(), "file:///data/x/latefill-demo/devices/");
        assert_eq!(
            p.target.as_str(),
            "file:///data/x/latefill-demo/devices_daily/"
        );
        assert_eq!(p.partitioning.column(), "event_time");
        assert_eq!(
            p.app_id(
                &p.partitioning
                    .key(PartitionDate::parse("2024-01-03").unwrap())
            ),
            "latefill/devices_daily/event_time=2024-01-03"
        );
    }

    #[test]
    fn the_transform_version_changes_with_what_the_sql_says_only() {
        let with_sql = |sql: &str| {
            Pipeline::default_devices(Path::new("/x"))
                .unwrap()
                .with_transform(Transform::Sql(sql.to_owned()))
        };
        let base = with_sql(
            "SELECT type, count(*) AS n, event_time FROM source GROUP BY type, event_time",
        );
        let relaid = with_sql(
            "select type,\n       count(*) as n,\n       event_time\n-- per type\nfrom source\ngroup by type, event_time\n",
        );
        let other = with_sql(
            "SELECT type, count(*) AS n, event_time FROM source WHERE type <> 'htc' GROUP BY type, event_time",
        );
        assert_eq!(base.transform_version(), relaid.transform_version());
        assert_ne!(base.transform_version(), other.transform_version());
        assert!(base.transform_version().starts_with("sql:"));
    }

    #[test]
    fn a_rust_transform_records_its_declared_version() {
        let with_fn = |version: &str| {
            Pipeline::default_devices(Path::new("/x"))
                .unwrap()
                .with_transform(Transform::from_fn(version, Ok))
        };
        assert_eq!(with_fn("v1").transform_version(), "rust:v1");
        assert_ne!(with_fn("v1"), with_fn("v2"));
        assert_eq!(with_fn("v1"), with_fn("v1"));
    }

    #[test]
    fn unknown_keys_and_bad_names_are_rejected_with_the_reason() {
        let typo = DEFAULT_PIPELINE_TOML.replace("partition_column", "partition_col");
        let err = Pipeline::from_toml(&typo, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("partition_col"), "{err}");

        let bad_name = DEFAULT_PIPELINE_TOML.replace("\"devices_daily\"", "\"a b\"");
        let err = Pipeline::from_toml(&bad_name, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("\"a b\""), "{err}");
    }

    #[test]
    fn an_hour_column_needs_hours_and_another_column() {
        let with = |granularity: &str, hour_column: &str| {
            Pipeline::from_toml(
                &DEFAULT_PIPELINE_TOML.replace(
                    "granularity = \"day\"",
                    &format!("granularity = \"{granularity}\"\nhour_column = \"{hour_column}\""),
                ),
                Path::new("/"),
            )
        };
        let split = with("hour", "event_hour").unwrap();
        assert_eq!(split.partitioning.columns(), ["event_time", "event_hour"]);
        let err = with("day", "event_hour").unwrap_err();
        assert!(
            err.to_string().contains("needs granularity = \"hour\""),
            "{err}"
        );
        let err = with("hour", "event_time").unwrap_err();
        assert!(err.to_string().contains("other than"), "{err}");
    }

    #[test]
    fn storage_options_apply_to_every_table_and_a_table_may_override_them() {
        let text = format!(
            "{DEFAULT_PIPELINE_TOML}\n[storage]\naws_region = \"eu-west-1\"\nmax_retries = 3\n"
        )
        .replace(
            "table = \"latefill-demo/devices\"",
            "table = \"latefill-demo/devices\"\nstorage = { aws_region = \"us-east-2\", aws_allow_http = true }",
        );
        let p = Pipeline::from_toml(&text, Path::new("/")).unwrap();
        let expected = |region: &str| {
            let base = StorageOptions::new()
                .with("aws_region", region)
                .with("max_retries", "3");
            match region {
                "us-east-2" => base.with("aws_allow_http", "true"),
                _ => base,
            }
        };
        assert_eq!(p.source_storage, expected("us-east-2"));
        assert_eq!(p.target_storage, expected("eu-west-1"));
        assert_eq!(p.state_storage, expected("eu-west-1"));
        let nested = format!("{DEFAULT_PIPELINE_TOML}\n[storage]\nx = [1]\n");
        let err = Pipeline::from_toml(&nested, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("storage.x is a array"), "{err}");
    }

    #[test]
    fn source_and_target_must_differ() {
        let same =
            DEFAULT_PIPELINE_TOML.replace("latefill-demo/devices_daily", "latefill-demo/devices");
        let err = Pipeline::from_toml(&same, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("same table"), "{err}");
    }

    #[test]
    fn urls_are_kept_and_dot_segments_removed() {
        let u = resolve_location("source", "s3://bucket/t", Path::new("/x")).unwrap();
        assert_eq!(u.as_str(), "s3://bucket/t");
        let u = resolve_location("source", "../t", Path::new("/x/y")).unwrap();
        assert_eq!(u.as_str(), "file:///x/t/");
    }
}
