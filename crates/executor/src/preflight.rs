//! What is checked before a claim, without reading a row: the tables' locations, the
//! transform planned over an empty partition, the result against the target.

use std::collections::BTreeMap;

use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::TryStreamExt;
use latefill_core::TableVersion;
use latefill_core::partition::Partitioning;
use latefill_core::storage::{StorageOptions, is_local_without_log, table_builder};
use url::Url;

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::schema::{arrow_schema, value_type};
use crate::session::Session;
use crate::source::{check_partitioned_by, open_source, register_source};
use crate::target::{check_target_schema, open_target};
use crate::transform::Transform;

/// Plans the pipeline's transform over the table `source` registered in `ctx`:
/// DDL, DML and other statements are refused.
pub(crate) async fn plan_transform(
    ctx: &SessionContext,
    pipeline: &Pipeline,
) -> Result<deltalake::datafusion::dataframe::DataFrame> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    match &pipeline.transform {
        Transform::Sql(sql) => {
            ctx.sql_with_options(sql, options)
                .await
                .map_err(|source| Error::InvalidSql {
                    sql: sql.trim().to_owned(),
                    source,
                })
        }
        Transform::DataFrame(transform) => {
            let failed = |source| Error::InvalidTransform {
                version: pipeline.transform_version(),
                source,
            };
            let source = ctx.table("source").await.map_err(failed)?;
            transform.apply(source).map_err(failed)
        }
    }
}

/// The result must carry every partitioning column.
pub(crate) fn check_partition_columns(partitioning: &Partitioning, result: &Schema) -> Result<()> {
    match partitioning
        .columns()
        .into_iter()
        .find(|c| result.field_with_name(c).is_err())
    {
        None => Ok(()),
        Some(column) => Err(Error::MissingPartitionColumn {
            column: column.to_owned(),
            columns: result.fields().iter().map(|f| f.name().clone()).collect(),
        }),
    }
}

/// Checks what a run of `pipeline` can be refused for without reading a row, so
/// that a caller refuses it before it claims anything (and so writes nothing):
///
/// - the tables' locations ([`check_locations`]), and a target location that holds
///   someone else's files and no Delta table;
/// - the source (at `version`, or its latest) and its partitioning;
/// - the transform, planned over an empty partition of the source: the statement's
///   kind, parse and plan errors, unknown tables and columns, the partition columns,
///   and the result's columns and types against the target's schema.
///
/// The cost over a run is one planning of the transform: it checks the tables this
/// process keeps, or those loaded beside it ([`prefetch`]), as they are, without asking
/// the store for newer commits; only a refusal is checked again on the latest tables, so a table
/// kept from before its schema changed never refuses a run.
pub async fn preflight(
    session: &Session,
    pipeline: &Pipeline,
    version: Option<TableVersion>,
) -> Result<()> {
    check_locations(pipeline)?;
    let tables = session.tables();
    let kept_source = match version {
        None => {
            tables
                .kept_or_awaited(&pipeline.source, &pipeline.source_storage)
                .await
        }
        Some(_) => None,
    };
    let kept_target = tables
        .kept_or_awaited(&pipeline.target, &pipeline.target_storage)
        .await;
    let any_kept = kept_source.is_some() || kept_target.is_some();
    let source = match kept_source {
        Some(table) => table,
        None => open_source(session, &pipeline.source, &pipeline.source_storage, version).await?,
    };
    let target = match kept_target {
        Some(table) => Some(table),
        None => open_target_or_check_location(session, pipeline).await?,
    };
    match check_plan(pipeline, &source, target.as_ref()).await {
        Err(_) if any_kept => {
            let source =
                open_source(session, &pipeline.source, &pipeline.source_storage, version).await?;
            let target = open_target_or_check_location(session, pipeline).await?;
            check_plan(pipeline, &source, target.as_ref()).await
        }
        checked => checked,
    }
}

/// The target, or `None` when there is none yet and latefill may create it there
/// ([`latefill_core::storage::check_new_location`]). The location is looked at while
/// the target is opened, not after: on an object store, one round trip instead of
/// two for a target to be created (and one listing spent for nothing on a table
/// that exists but this process does not keep yet).
pub(crate) async fn open_target_or_check_location(
    session: &Session,
    pipeline: &Pipeline,
) -> Result<Option<DeltaTable>> {
    let url = &pipeline.target;
    let missing_locally = url.to_file_path().is_ok_and(|path| !path.exists());
    let location = async {
        if missing_locally {
            return Ok(());
        }
        let handle = table_builder(url, &pipeline.target_storage)
            .and_then(DeltaTableBuilder::build)
            .map_err(|source| Error::Delta {
                action: "opening target",
                table: url.clone(),
                source,
            })?;
        latefill_core::storage::check_new_location(&handle, url, "target")
            .await
            .map_err(Error::from)
    };
    let (target, location) = tokio::join!(open_target(session, pipeline), location);
    let target = target?;
    if target.is_none() {
        location?;
    }
    Ok(target)
}

/// The checks of [`preflight`] on the given tables: the source's partitioning and
/// period column, the transform planned over an empty partition of it, and the
/// result against the target's schema.
pub(crate) async fn check_plan(
    pipeline: &Pipeline,
    source: &DeltaTable,
    target: Option<&DeltaTable>,
) -> Result<()> {
    check_partitioned_by(source, &pipeline.source, &pipeline.partitioning)?;
    check_period_column_type(source, pipeline)?;
    if pipeline.partitioning.format().is_none() {
        check_period_values(source, pipeline).await?;
    }
    let ctx = deltalake::delta_datafusion::create_session().into_inner();
    register_source(&ctx, source, &pipeline.source, &BTreeMap::new(), None).await?;
    let result = plan_transform(&ctx, pipeline).await?;
    let schema: Schema = result.schema().as_arrow().clone();
    check_partition_columns(&pipeline.partitioning, &schema)?;
    // Each audit's SQL plans over `result` (and `source`).
    if !pipeline.audits.is_empty() {
        ctx.register_table("result", result.into_view())
            .map_err(|e| Error::Internal(format!("registering the result: {e}")))?;
        for audit in &pipeline.audits {
            audit.plan(&ctx).await.map_err(Error::AuditInvalid)?;
        }
    }
    match target {
        Some(target) => check_target_schema(target, &pipeline.target, &schema),
        None => Ok(()),
    }
}

/// An integer period column holds periods only in a declared format (`20240503`
/// under `%Y%m%d`): without one, refused, naming the column, its type and the setting.
pub(crate) fn check_period_column_type(source: &DeltaTable, pipeline: &Pipeline) -> Result<()> {
    let partitioning = &pipeline.partitioning;
    if partitioning.format().is_some() {
        return Ok(());
    }
    let schema = arrow_schema(source, &pipeline.source, "reading the schema of source")?;
    let column = partitioning.column();
    let Ok(field) = schema.field_with_name(column) else {
        return Ok(());
    };
    let data_type = value_type(field.data_type());
    if !data_type.is_integer() {
        return Ok(());
    }
    let example = match partitioning.granularity() {
        latefill_core::partition::Granularity::Day => "%Y%m%d\" for 20240503",
        latefill_core::partition::Granularity::Hour => "%Y%m%d%H\" for 2024050305",
        latefill_core::partition::Granularity::Month => "%Y%m\" for 202405",
    };
    Err(Error::PeriodColumnType {
        table: pipeline.source.clone(),
        column: column.to_owned(),
        data_type: data_type.to_string(),
        granularity: partitioning.granularity().to_string(),
        example,
    })
}

/// A period column whose values are all of another form than the granularity's
/// (`20240503` for days, with no format declared) is refused, naming a value and the
/// setting, rather than every partition being reported empty. One value that is a
/// period (read from the log, in memory) is enough to go on.
pub(crate) async fn check_period_values(source: &DeltaTable, pipeline: &Pipeline) -> Result<()> {
    let partitioning = &pipeline.partitioning;
    let column = partitioning.column();
    let mut example: Option<String> = None;
    let mut files = source.get_active_add_actions_by_predicate(None);
    while let Some(file) = files.try_next().await.map_err(|source| Error::Delta {
        action: "listing files of source",
        table: pipeline.source.clone(),
        source,
    })? {
        let values = file.partition_values_map();
        let Some(Some(raw)) = values.get(column) else {
            continue;
        };
        if partitioning
            .period_of(|c| values.get(c).map(|v| v.as_deref()))
            .is_ok()
        {
            return Ok(());
        }
        example.get_or_insert_with(|| raw.clone());
    }
    match example {
        None => Ok(()),
        Some(value) => Err(Error::PeriodColumnValues {
            table: pipeline.source.clone(),
            column: column.to_owned(),
            value,
            expected: partitioning.granularity().what(),
        }),
    }
}

/// Checks the pipeline's table locations without asking a store: no table plays two
/// roles (the state table is neither the source nor the target), and no local
/// location is a regular file (or under one).
pub fn check_locations(pipeline: &Pipeline) -> Result<()> {
    use crate::project::same_table;
    for (role, url) in [("source", &pipeline.source), ("target", &pipeline.target)] {
        if same_table(url, &pipeline.state) {
            return Err(Error::InvalidLocation {
                role: "state",
                location: pipeline.state.to_string(),
                reason: format!(
                    "it is also the pipeline's {role} table; the state table must be a \
                     table of its own: set `state.table` to a new location"
                ),
            });
        }
    }
    for (role, url) in [
        ("source", &pipeline.source),
        ("target", &pipeline.target),
        ("state", &pipeline.state),
    ] {
        if let Some(reason) = latefill_core::storage::local_location_problem(url) {
            return Err(Error::InvalidLocation {
                role,
                location: url.to_string(),
                reason: format!("{reason}; set `{role}.table` to a table's directory"),
            });
        }
    }
    Ok(())
}

/// Loads the pipeline's source and target into the tables this process keeps, for a
/// caller with other work to do before its runs (detection, a claim): on an object
/// store their logs are read meanwhile, and the runs then only bring them up to date
/// (a run that opens one while it is loading waits for that load). Errors are left to
/// the runs, which meet them again and report them.
///
/// `source_too: false` for runs that read the source at a version of their own.
pub async fn prefetch(session: &Session, pipeline: &Pipeline, source_too: bool) {
    let load = async |url: &Url, options: &StorageOptions| {
        if is_local_without_log(url) {
            return;
        }
        if let Err(e) = session.tables().load(url, options, None).await {
            tracing::debug!(table = %url, error = %e, "prefetch: not loaded");
        }
    };
    let source = async {
        if source_too {
            load(&pipeline.source, &pipeline.source_storage).await;
        }
    };
    tokio::join!(source, load(&pipeline.target, &pipeline.target_storage));
}
