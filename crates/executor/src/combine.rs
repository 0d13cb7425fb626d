//! Whether a transform's result for a partition can be brought up to date from late
//! rows alone: the first step of the incremental strategy (issue 25). Decided from
//! DataFusion's logical plan, never from the SQL text.
//!
//! ```text
//!  Projection (columns, renamed)          optional, any number, with
//!    Sort (without a LIMIT)               optional  subquery aliases between
//!      Aggregate  GROUP BY keys           exactly one; no HAVING above it
//!        count(*), count(c), sum(int | decimal), min(c), max(c)
//!        Filter, Projection               optional, deterministic
//!          TableScan source
//! ```
//!
//! Such a result, computed over the rows appended since the partition was processed
//! and combined with the partition's current rows on the group keys (`count` and
//! `sum` add, `min` and `max` keep the smaller or larger), equals the result over
//! all the partition's rows. Anything else (`avg`, `count(DISTINCT ...)`, sums of
//! floating-point numbers, windows, joins, `HAVING`, `LIMIT`, grouping sets,
//! volatile functions) is not combinable, and [`NotCombinable`] says why, for the
//! plan shown to users.

use std::collections::HashMap;

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

/// How one aggregate's values from late rows combine with the partition's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// `count`: the counts add.
    Count,
    /// `sum` over integers or decimals: the sums add (null plus a value is the value).
    Sum,
    /// `min`: the smaller.
    Min,
    /// `max`: the larger.
    Max,
}

/// A transform whose result can be combined: its result's group-key columns, and
/// each aggregate column with how it combines, by the names the result gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combinable {
    /// The result's columns that hold the group keys.
    pub keys: Vec<String>,
    /// The result's aggregate columns, with how each combines.
    pub aggregates: Vec<(String, Combine)>,
}

/// Why a transform's result cannot be combined, in words for the plan
/// (`"avg is not combinable"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotCombinable(pub String);

fn not(reason: impl Into<String>) -> NotCombinable {
    NotCombinable(reason.into())
}

/// What the result's column `name` is, below the projections above the aggregate.
#[derive(Debug, Clone)]
enum Origin {
    Key,
    Aggregate(Combine),
}

/// Whether `plan`, a transform's logical plan over the table `source`, computes a
/// result that late rows can be combined into ([`Combinable`]), or why not.
pub fn combinable(plan: &LogicalPlan) -> Result<Combinable, NotCombinable> {
    // Above the aggregate: projections that pass columns through, renamed or not.
    let mut renames: Vec<Vec<(String, String)>> = Vec::new();
    let mut node = plan;
    let aggregate = loop {
        match node {
            LogicalPlan::Projection(projection) => {
                let input = projection.input.schema();
                let mut renamed = Vec::new();
                for expr in &projection.expr {
                    let name = match expr {
                        Expr::Alias(alias) => alias.name.clone(),
                        Expr::Column(column) => column.name.clone(),
                        other => other.schema_name().to_string(),
                    };
                    // The user's name for the column aside, what does it hold?
                    let inner = match expr {
                        Expr::Alias(alias) => alias.expr.as_ref(),
                        other => other,
                    };
                    let Some(from) = passed_through(inner, input) else {
                        return Err(not(format!(
                            "the result column {name} is computed after the aggregation ({expr})"
                        )));
                    };
                    renamed.push((from, name));
                }
                renames.push(renamed);
                node = projection.input.as_ref();
            }
            LogicalPlan::Sort(sort) if sort.fetch.is_none() => node = sort.input.as_ref(),
            // A subquery's name qualifies its columns, and changes none of them.
            LogicalPlan::SubqueryAlias(alias) => node = alias.input.as_ref(),
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
                return Err(not("the transform keeps only some rows (LIMIT)"));
            }
            LogicalPlan::Filter(_) => {
                return Err(not("the transform filters the aggregated rows (HAVING)"));
            }
            LogicalPlan::Aggregate(aggregate) => break aggregate,
            other => return Err(not(describe(other))),
        }
    };

    // The aggregate's output columns: the group keys, then the aggregates.
    let input_schema = aggregate.input.schema();
    let mut origins: Vec<(String, Origin)> = Vec::new();
    for key in &aggregate.group_expr {
        if matches!(key, Expr::GroupingSet(_)) {
            return Err(not("the transform groups by grouping sets (ROLLUP, CUBE)"));
        }
        if key.is_volatile() {
            return Err(not(format!("the group key {key} is volatile")));
        }
    }
    for (i, field) in aggregate.schema.fields().iter().enumerate() {
        let origin = match i.checked_sub(aggregate.group_expr.len()) {
            None => Origin::Key,
            Some(j) => Origin::Aggregate(combine_of(&aggregate.aggr_expr[j], input_schema)?),
        };
        origins.push((field.name().clone(), origin));
    }
    below_aggregate(aggregate.input.as_ref())?;

    // The result's names, through the projections from the innermost outwards.
    let mut names: Vec<(String, Origin)> = origins;
    for renamed in renames.iter().rev() {
        let by_name: HashMap<&str, &Origin> = names.iter().map(|(n, o)| (n.as_str(), o)).collect();
        let mut next = Vec::with_capacity(renamed.len());
        for (from, to) in renamed {
            let origin = by_name.get(from.as_str()).ok_or_else(|| {
                not(format!(
                    "the result column {to} is not an output of the aggregation"
                ))
            })?;
            next.push((to.clone(), (*origin).clone()));
        }
        names = next;
    }
    let mut combinable = Combinable {
        keys: Vec::new(),
        aggregates: Vec::new(),
    };
    for (name, origin) in names {
        match origin {
            Origin::Key => combinable.keys.push(name),
            Origin::Aggregate(combine) => combinable.aggregates.push((name, combine)),
        }
    }
    Ok(combinable)
}

/// The column of `input` that the projection's `expr` passes on, renamed or not:
/// a column, or the expression that `input` computed under that name (the SQL
/// planner writes `count(*)` above an aggregate as the aggregate's own expression).
fn passed_through(expr: &Expr, input: &DFSchema) -> Option<String> {
    let has = |name: &str| input.fields().iter().any(|f| f.name() == name);
    match expr {
        Expr::Column(column) => Some(column.name.clone()),
        Expr::Alias(alias) if has(&alias.name) => Some(alias.name.clone()),
        Expr::Alias(alias) => passed_through(&alias.expr, input),
        other => {
            let name = other.schema_name().to_string();
            has(&name).then_some(name)
        }
    }
}

/// How the aggregate `expr` combines, or why it does not.
fn combine_of(expr: &Expr, input: &DFSchema) -> Result<Combine, NotCombinable> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(function) = expr else {
        return Err(not(format!("{expr} is not an aggregate function")));
    };
    let name = function.func.name().to_ascii_lowercase();
    let params = &function.params;
    if params.distinct {
        return Err(not(format!("{name}(DISTINCT ...) is not combinable")));
    }
    if !params.order_by.is_empty() {
        return Err(not(format!("{name} with ORDER BY is not combinable")));
    }
    if params.args.iter().any(Expr::is_volatile) {
        return Err(not(format!("{expr} is volatile")));
    }
    match name.as_str() {
        "count" => Ok(Combine::Count),
        "min" => Ok(Combine::Min),
        "max" => Ok(Combine::Max),
        "sum" => {
            let [arg] = params.args.as_slice() else {
                return Err(not(format!("{expr}: sum takes one argument")));
            };
            let data_type = arg
                .get_type(input)
                .map_err(|e| not(format!("the type of {arg}: {e}")))?;
            match data_type {
                t if t.is_integer() => Ok(Combine::Sum),
                DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..) => Ok(Combine::Sum),
                t if t.is_floating() => Err(not(format!(
                    "sum over the floating-point {arg} is not combinable (its rounding depends on the order of addition)"
                ))),
                other => Err(not(format!(
                    "sum over {arg} of type {other} is not combinable"
                ))),
            }
        }
        "avg" | "mean" => Err(not(format!(
            "{name} is not combinable (it would need its sum and count)"
        ))),
        other => Err(not(format!("{other} is not combinable"))),
    }
}

/// Below the aggregate: deterministic filters and projections over `source`.
fn below_aggregate(plan: &LogicalPlan) -> Result<(), NotCombinable> {
    match plan {
        LogicalPlan::Filter(filter) => {
            if filter.predicate.is_volatile() {
                return Err(not(format!("the filter {} is volatile", filter.predicate)));
            }
            below_aggregate(filter.input.as_ref())
        }
        LogicalPlan::Projection(projection) => {
            if let Some(expr) = projection.expr.iter().find(|e| e.is_volatile()) {
                return Err(not(format!("{expr} is volatile")));
            }
            below_aggregate(projection.input.as_ref())
        }
        LogicalPlan::SubqueryAlias(alias) => below_aggregate(alias.input.as_ref()),
        LogicalPlan::TableScan(scan) if scan.table_name.table() == "source" => Ok(()),
        LogicalPlan::TableScan(scan) => Err(not(format!(
            "the transform reads the table {} besides source",
            scan.table_name
        ))),
        other => Err(not(describe(other))),
    }
}

/// Why a plan node other than those above is not combinable.
fn describe(plan: &LogicalPlan) -> String {
    match plan {
        LogicalPlan::Window(_) => "the transform uses a window function".into(),
        LogicalPlan::Join(_) => "the transform joins".into(),
        LogicalPlan::Union(_) => "the transform unions several queries".into(),
        LogicalPlan::Distinct(_) => "the transform selects DISTINCT rows".into(),
        LogicalPlan::TableScan(_) | LogicalPlan::Filter(_) | LogicalPlan::Projection(_) => {
            "the transform does not aggregate".into()
        }
        other => format!("the transform's plan holds {}", other.display()),
    }
}

/// Whether `pipeline`'s transform, over a `source` of `schema`, computes a result
/// that late rows can be combined into: [`combinable`] on its plan. A Rust
/// transform is not (its plan may change with what it is given).
pub(crate) async fn transform_combinable(
    pipeline: &crate::Pipeline,
    schema: deltalake::arrow::datatypes::SchemaRef,
) -> crate::Result<Result<Combinable, NotCombinable>> {
    if pipeline.transform.as_sql().is_none() {
        return Ok(Err(not("a Rust transform's result is not combinable")));
    }
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    let empty = deltalake::datafusion::datasource::MemTable::try_new(schema, vec![vec![]])
        .map_err(|e| crate::Error::Internal(format!("planning the transform: {e}")))?;
    ctx.register_table("source", std::sync::Arc::new(empty))
        .map_err(|e| crate::Error::Internal(format!("planning the transform: {e}")))?;
    let plan = crate::preflight::plan_transform(&ctx, pipeline).await?;
    Ok(combinable(plan.logical_plan()))
}

/// The transform's result for the partition of `date`, brought up to date from the
/// files `appended` to the source since the partition was processed: the transform
/// over those files only, combined with the target's current rows of the partition
/// on `how`'s keys (`count` and `sum` add, `min` and `max` keep the smaller or
/// larger; SQL's null rules: a null side adds nothing). Reads no other source file.
/// A run with an incremental [`Choice`](crate::Choice) writes this instead of the
/// transform's result over the whole partition.
pub async fn combined_result(
    session: &crate::Session,
    pipeline: &crate::Pipeline,
    date: latefill_core::PartitionDate,
    appended: &crate::Appended,
    how: &Combinable,
) -> crate::Result<deltalake::datafusion::dataframe::DataFrame> {
    let source = crate::source::open_source(
        session,
        &pipeline.source,
        &pipeline.source_storage,
        Some(appended.at),
    )
    .await?;
    let Some(target) = crate::target::open_target(session, pipeline).await? else {
        return Err(crate::Error::Internal(format!(
            "combining late rows: the target {} does not exist",
            pipeline.target
        )));
    };
    let target_files =
        crate::source::partition_files(&target, &pipeline.target, &pipeline.partitioning, date)
            .await?;
    let files =
        crate::source::partition_files(&source, &pipeline.source, &pipeline.partitioning, date)
            .await?;
    let values = crate::source::raw_values(&files, &pipeline.partitioning);
    let ctx = deltalake::delta_datafusion::create_session().into_inner();
    combine_late_rows(
        &ctx,
        pipeline,
        &pipeline.partition_name(date),
        &source,
        &values,
        &appended.files,
        &target,
        &target_files,
        how,
    )
    .await
}

/// [`combined_result`] in `ctx`, from the `source` holding the `late` files (of the
/// partition whose raw partition values are `values`) and the `target` whose files
/// of the partition are `target_files`; registers `source` in `ctx` as the late
/// files alone.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn combine_late_rows(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    pipeline: &crate::Pipeline,
    partition: &str,
    source: &deltalake::DeltaTable,
    values: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    late: &[String],
    target: &deltalake::DeltaTable,
    target_files: &[deltalake::kernel::LogicalFileView],
    how: &Combinable,
) -> crate::Result<deltalake::datafusion::dataframe::DataFrame> {
    use deltalake::datafusion::functions_aggregate::expr_fn::{max, min, sum};
    use deltalake::datafusion::logical_expr::{cast, col};

    let internal = |e: deltalake::datafusion::error::DataFusionError| {
        crate::Error::Internal(format!("combining late rows into {partition}: {e}"))
    };
    let delta_error = |action, table: &url::Url| {
        let table = table.clone();
        move |source| crate::Error::Delta {
            action,
            table,
            source,
        }
    };
    // The source: the late files alone, registered as a run registers the partition.
    crate::source::register_source(ctx, source, &pipeline.source, values, Some(late)).await?;
    let late = crate::preflight::plan_transform(ctx, pipeline).await?;
    let columns: Vec<String> = late
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();

    // The target's rows of the partition, as the last run wrote them.
    target
        .update_datafusion_session(&ctx.state())
        .map_err(delta_error(
            "registering the storage of target",
            &pipeline.target,
        ))?;
    let current = target
        .table_provider()
        .with_file_paths(target_files.iter().map(|f| f.path().into_owned()))
        .await
        .map_err(internal)?;
    let current = ctx
        .read_table(current)
        .and_then(|rows| {
            rows.select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .map_err(internal)?;

    // Both, grouped on the keys, each aggregate combined, in the result's columns and
    // types.
    let types: HashMap<String, DataType> = late
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let both = current.union(late).map_err(internal)?;
    let keys: Vec<Expr> = how.keys.iter().map(|k| col(format!("\"{k}\""))).collect();
    let aggregates: Vec<Expr> = how
        .aggregates
        .iter()
        .map(|(name, combine)| {
            let column = col(format!("\"{name}\""));
            let combined = match combine {
                Combine::Count | Combine::Sum => sum(column),
                Combine::Min => min(column),
                Combine::Max => max(column),
            };
            combined.alias(name)
        })
        .collect();
    let grouped = both.aggregate(keys, aggregates).map_err(internal)?;
    let typed: Vec<Expr> = columns
        .iter()
        .map(|name| cast(col(format!("\"{name}\"")), types[name].clone()).alias(name))
        .collect();
    grouped.select(typed).map_err(internal)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::prelude::SessionContext;

    use super::*;

    /// The transform `sql`'s logical plan over a `source` of devices.
    async fn plan(sql: &str) -> LogicalPlan {
        let schema = Arc::new(Schema::new(vec![
            Field::new("type", DataType::Utf8, true),
            Field::new("version", DataType::Int64, true),
            Field::new("bytes", DataType::Int32, true),
            Field::new("price", DataType::Decimal128(12, 2), true),
            Field::new("ratio", DataType::Float64, true),
            Field::new("event_time", DataType::Date32, true),
        ]));
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table("source", Arc::new(table)).unwrap();
        ctx.register_table(
            "other",
            Arc::new(
                MemTable::try_new(
                    Arc::new(Schema::new(vec![Field::new("type", DataType::Utf8, true)])),
                    vec![vec![]],
                )
                .unwrap(),
            ),
        )
        .unwrap();
        ctx.sql(sql).await.unwrap().into_unoptimized_plan()
    }

    async fn verdict(sql: &str) -> Result<Combinable, NotCombinable> {
        combinable(&plan(sql).await)
    }

    #[tokio::test]
    async fn the_default_transform_is_combinable_with_its_columns_named() {
        let c = verdict(
            "SELECT type, version, count(*) AS devices, event_time FROM source \
             GROUP BY type, version, event_time",
        )
        .await
        .unwrap();
        assert_eq!(c.keys, ["type", "version", "event_time"]);
        assert_eq!(c.aggregates, [("devices".to_owned(), Combine::Count)]);
    }

    #[tokio::test]
    async fn counts_integer_and_decimal_sums_minima_and_maxima_combine_below_filters() {
        let c = verdict(
            "SELECT event_time, type AS kind, count(bytes) AS n, sum(bytes) AS total, \
             sum(price) AS revenue, min(ratio) AS lo, max(version) AS hi \
             FROM (SELECT * FROM source WHERE version > 1) AS s \
             WHERE type <> 'x' GROUP BY event_time, type ORDER BY kind",
        )
        .await
        .unwrap();
        assert_eq!(c.keys, ["event_time", "kind"]);
        assert_eq!(
            c.aggregates,
            [
                ("n".to_owned(), Combine::Count),
                ("total".to_owned(), Combine::Sum),
                ("revenue".to_owned(), Combine::Sum),
                ("lo".to_owned(), Combine::Min),
                ("hi".to_owned(), Combine::Max),
            ]
        );
    }

    #[tokio::test]
    async fn what_cannot_be_combined_says_why() {
        let group = "FROM source GROUP BY event_time";
        for (sql, why) in [
            (format!("SELECT event_time, avg(bytes) AS a {group}"), "avg is not combinable"),
            (
                format!("SELECT event_time, count(DISTINCT type) AS n {group}"),
                "count(DISTINCT ...) is not combinable",
            ),
            (format!("SELECT event_time, sum(ratio) AS s {group}"), "floating-point"),
            (
                format!("SELECT event_time, count(*) AS n {group} HAVING count(*) > 1"),
                "HAVING",
            ),
            (format!("SELECT event_time, count(*) AS n {group} LIMIT 5"), "LIMIT"),
            (
                format!("SELECT event_time, count(*) AS n {group} ORDER BY n LIMIT 5"),
                "LIMIT",
            ),
            (
                format!("SELECT event_time, count(*) * 2 AS n {group}"),
                "computed after the aggregation",
            ),
            (
                format!("SELECT event_time, count(*) * 2 AS \"count(*)\" {group}"),
                "computed after the aggregation",
            ),
            (
                "SELECT type, event_time, row_number() OVER (ORDER BY version) AS r FROM source"
                    .to_owned(),
                "window",
            ),
            (
                "SELECT s.event_time, count(*) AS n FROM source s JOIN other o ON s.type = o.type \
                 GROUP BY s.event_time"
                    .to_owned(),
                "joins",
            ),
            ("SELECT type, event_time FROM source".to_owned(), "does not aggregate"),
            (
                "SELECT event_time, count(*) AS n FROM source WHERE random() > 0.5 GROUP BY event_time"
                    .to_owned(),
                "volatile",
            ),
            (
                "SELECT type, event_time, count(*) AS n FROM source GROUP BY ROLLUP (type, event_time)"
                    .to_owned(),
                "grouping sets",
            ),
        ] {
            let err = verdict(&sql).await.expect_err(&sql);
            assert!(err.0.contains(why), "{sql}: {err}");
        }
    }
}
