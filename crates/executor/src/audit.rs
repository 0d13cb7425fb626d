//! Audits: checks of a partition's result, after the transform and before the target
//! commit (write, audit, publish). A pipeline file declares them as `[[audit]]`
//! entries; an audit of severity `error` that finds offending rows fails the
//! partition with the target untouched, one of severity `warn` is reported and the
//! result published.
//!
//! ```text
//!  transform ─► result, held in memory once ─┬─► audits (SQL over `result`, `source`)
//!                                            └─► the target's data files, the commit
//! ```
//!
//! Each audit is a query for the offending rows: built-ins are written as such SQL
//! (`not_null`, `unique`, `accepted_values`), and a custom audit is the user's. The
//! result is materialised once (DataFusion's `cache`, in memory), so that the audits
//! and the write read it without computing it again; `row_count` and `compare` need
//! only its row count and the partition's.

use std::fmt;

use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;

/// How much an audit's failure matters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The partition fails; the target is not touched (the default).
    #[default]
    Error,
    /// The result is published; the failure is reported.
    Warn,
}

/// A comparison operator of a `compare` audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `>=`
    GreaterOrEqual,
    /// `>`
    Greater,
}

impl Comparison {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Comparison::Less => a < b,
            Comparison::LessOrEqual => a <= b,
            Comparison::Equal => a == b,
            Comparison::NotEqual => a != b,
            Comparison::GreaterOrEqual => a >= b,
            Comparison::Greater => a > b,
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Equal => "=",
            Comparison::NotEqual => "!=",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Greater => ">",
        })
    }
}

/// One side of a `compare` audit: `rows_out` (the result's rows), `rows_in` (the
/// source partition's rows), or a number; a side may be scaled (`0.5 * rows_in`).
#[derive(Debug, Clone, PartialEq)]
pub struct Operand {
    /// The factor (1 when none is written).
    pub factor: f64,
    /// `rows_out`, `rows_in`, or `None` for the number `factor` alone.
    pub count: Option<RowCount>,
}

/// A row count a `compare` audit can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowCount {
    /// The result's rows.
    Out,
    /// The source partition's rows.
    In,
}

// Factors are finite (`parse_compare` refuses others), so equality is reflexive.
impl Eq for Operand {}

impl Operand {
    fn value(&self, rows_in: u64, rows_out: u64) -> f64 {
        self.factor
            * match self.count {
                Some(RowCount::In) => rows_in as f64,
                Some(RowCount::Out) => rows_out as f64,
                None => 1.0,
            }
    }
}

/// What an audit checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// These columns hold no null.
    NotNull(Vec<String>),
    /// No two rows share their values of these columns.
    Unique(Vec<String>),
    /// The column holds only these values (or null), compared as text.
    AcceptedValues {
        /// The column.
        column: String,
        /// The values it may hold.
        values: Vec<String>,
    },
    /// The result has at least `min` and at most `max` rows.
    RowCount {
        /// The fewest rows.
        min: Option<u64>,
        /// The most rows.
        max: Option<u64>,
    },
    /// A comparison of the result's rows with the source partition's, e.g.
    /// `rows_out <= rows_in`.
    Compare(Operand, Comparison, Operand),
    /// SQL over `result` (and `source`) returning the offending rows.
    Sql(String),
}

/// An audit of a pipeline's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Its name in reports (`name`, else one made from the check).
    pub name: String,
    /// What it checks.
    pub check: Check,
    /// What a failure does.
    pub severity: Severity,
}

/// What an audit found in one partition's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditOutcome {
    /// The audit's name.
    pub name: String,
    /// Its severity.
    pub severity: Severity,
    /// Whether it found nothing wrong.
    pub passed: bool,
    /// How many offending rows it found (for a row count or comparison: 1 when it
    /// failed).
    pub failing_rows: u64,
    /// Up to 5 offending rows, as JSON objects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<serde_json::Value>,
    /// What it found, in words.
    pub message: String,
}

/// How many offending rows an audit keeps as samples.
pub const SAMPLES: usize = 5;

/// A column name quoted for SQL.
fn quoted(column: &str) -> String {
    format!("\"{}\"", column.replace('"', "\"\""))
}

/// A text literal for SQL.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl Audit {
    /// The name a check gets when the file gives none: `not_null(type, devices)`.
    pub fn default_name(check: &Check) -> String {
        match check {
            Check::NotNull(columns) => format!("not_null({})", columns.join(", ")),
            Check::Unique(columns) => format!("unique({})", columns.join(", ")),
            Check::AcceptedValues { column, .. } => format!("accepted_values({column})"),
            Check::RowCount { min, max } => format!(
                "row_count({}..{})",
                min.map_or(String::new(), |n| n.to_string()),
                max.map_or(String::new(), |n| n.to_string())
            ),
            Check::Compare(..) => "compare".into(),
            Check::Sql(_) => "sql".into(),
        }
    }

    /// The query for the offending rows, for the checks that have one.
    fn offending_rows_sql(&self) -> Option<String> {
        match &self.check {
            Check::NotNull(columns) => Some(format!(
                "SELECT * FROM result WHERE {}",
                columns
                    .iter()
                    .map(|c| format!("{} IS NULL", quoted(c)))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            )),
            Check::Unique(columns) => {
                let list = columns
                    .iter()
                    .map(|c| quoted(c))
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(format!(
                    "SELECT {list}, count(*) AS rows_with_these_values FROM result \
                     GROUP BY {list} HAVING count(*) > 1"
                ))
            }
            Check::AcceptedValues { column, values } => Some(format!(
                "SELECT * FROM result WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({})",
                values
                    .iter()
                    .map(|v| literal(v))
                    .collect::<Vec<_>>()
                    .join(", "),
                c = quoted(column)
            )),
            Check::Sql(sql) => Some(sql.trim().trim_end_matches(';').to_owned()),
            Check::RowCount { .. } | Check::Compare(..) => None,
        }
    }

    /// Plans the audit's query in `ctx` (where `result` and `source` are registered),
    /// reading nothing: an error names the audit and its SQL.
    pub(crate) async fn plan(&self, ctx: &SessionContext) -> Result<(), String> {
        match self.offending_rows_sql() {
            Some(sql) => ctx
                .sql(&sql)
                .await
                .map(|_| ())
                .map_err(|e| format!("audit {} does not plan: {e}\n  {sql}", self.name)),
            None => Ok(()),
        }
    }

    /// Runs the audit in `ctx`, where `result` is the partition's result and
    /// `source` the partition's source rows; `rows_in` and `rows_out` are their
    /// counts.
    pub(crate) async fn run(
        &self,
        ctx: &SessionContext,
        rows_in: u64,
        rows_out: u64,
    ) -> Result<AuditOutcome, String> {
        let outcome = |failing_rows: u64, samples, message: String| AuditOutcome {
            name: self.name.clone(),
            severity: self.severity,
            passed: failing_rows == 0,
            failing_rows,
            samples,
            message,
        };
        match &self.check {
            Check::RowCount { min, max } => {
                let low = min.is_some_and(|min| rows_out < min);
                let high = max.is_some_and(|max| rows_out > max);
                let range = format!(
                    "{}..{}",
                    min.map_or("0".into(), |n| n.to_string()),
                    max.map_or(String::new(), |n| n.to_string())
                );
                Ok(outcome(
                    u64::from(low || high),
                    Vec::new(),
                    format!("{rows_out} rows; the audit accepts {range}"),
                ))
            }
            Check::Compare(left, op, right) => {
                let (a, b) = (
                    left.value(rows_in, rows_out),
                    right.value(rows_in, rows_out),
                );
                let holds = op.holds(a, b);
                Ok(outcome(
                    u64::from(!holds),
                    Vec::new(),
                    format!("rows_out = {rows_out}, rows_in = {rows_in}: {a} {op} {b} is {holds}"),
                ))
            }
            _ => {
                let sql = self.offending_rows_sql().expect("a query check");
                let failed = |e: deltalake::datafusion::error::DataFusionError| {
                    format!("audit {}: {e}\n  {sql}", self.name)
                };
                let rows = ctx.sql(&sql).await.map_err(failed)?;
                let count = rows.clone().count().await.map_err(failed)? as u64;
                let samples = if count == 0 {
                    Vec::new()
                } else {
                    let batches = rows
                        .limit(0, Some(SAMPLES))
                        .map_err(failed)?
                        .collect()
                        .await
                        .map_err(failed)?;
                    as_json(&batches)?
                };
                Ok(outcome(
                    count,
                    samples,
                    format!("{count} offending row{}", if count == 1 { "" } else { "s" }),
                ))
            }
        }
    }
}

/// `batches` as JSON objects, a row each.
fn as_json(
    batches: &[deltalake::arrow::array::RecordBatch],
) -> Result<Vec<serde_json::Value>, String> {
    let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&deltalake::arrow::array::RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|e| format!("audit samples as JSON: {e}"))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("audit samples as JSON: {e}"))
}

/// Parses a `compare` expression: `rows_out <= rows_in`, `rows_out >= 0.5 * rows_in`,
/// `rows_out > 0`.
pub fn parse_compare(text: &str) -> Result<(Operand, Comparison, Operand), String> {
    let ops = [
        ("<=", Comparison::LessOrEqual),
        (">=", Comparison::GreaterOrEqual),
        ("!=", Comparison::NotEqual),
        ("<", Comparison::Less),
        (">", Comparison::Greater),
        ("=", Comparison::Equal),
    ];
    let (at, symbol, op) = ops
        .iter()
        .filter_map(|(s, op)| text.find(s).map(|at| (at, *s, *op)))
        .min_by_key(|(at, s, _)| (*at, std::cmp::Reverse(s.len())))
        .ok_or_else(|| {
            format!(
                "{text:?} has no comparison (<, <=, =, !=, >=, >): e.g. \"rows_out <= rows_in\""
            )
        })?;
    let operand = |side: &str| -> Result<Operand, String> {
        let side = side.trim();
        let (factor, name) = match side.split_once('*') {
            Some((f, n)) => (
                f.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| format!("{f:?} in {text:?} is not a number"))?,
                n.trim(),
            ),
            None => (1.0, side),
        };
        let count = match name {
            "rows_out" => Some(RowCount::Out),
            "rows_in" => Some(RowCount::In),
            number => {
                let n: f64 = number
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| {
                        format!("{number:?} in {text:?} is neither rows_out, rows_in nor a number")
                    })?;
                return Ok(Operand {
                    factor: factor * n,
                    count: None,
                });
            }
        };
        Ok(Operand { factor, count })
    };
    Ok((
        operand(&text[..at])?,
        op,
        operand(&text[at + symbol.len()..])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_parse_with_factors_and_numbers() {
        let (a, op, b) = parse_compare("rows_out <= rows_in").unwrap();
        assert_eq!(op, Comparison::LessOrEqual);
        assert_eq!(a.value(10, 4), 4.0);
        assert_eq!(b.value(10, 4), 10.0);
        let (a, op, b) = parse_compare("rows_out >= 0.5 * rows_in").unwrap();
        assert_eq!(
            (op, a.value(10, 4), b.value(10, 4)),
            (Comparison::GreaterOrEqual, 4.0, 5.0)
        );
        let (_, op, b) = parse_compare("rows_out > 0").unwrap();
        assert_eq!((op, b.value(10, 4)), (Comparison::Greater, 0.0));
        for bad in ["rows_out", "rows_out <= rows", "x * rows_in > 1"] {
            assert!(parse_compare(bad).is_err(), "{bad}");
        }
    }
}
