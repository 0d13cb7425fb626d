//! The source side of a run: the table at a pinned version, the files of one
//! partition from its log, and the partition registered for the transform.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::Column;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, cast, lit};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::LogicalFileView;
use deltalake::{DeltaTable, DeltaTableError};
use latefill_core::TableVersion;
use latefill_core::partition::{PartitionDate, PartitionKey, Partitioning};
use latefill_core::storage::{StorageOptions, is_local_without_log, table_builder};
use url::Url;

use crate::error::{Error, Result};
use crate::fingerprint::{file_identity, files_fingerprint, fingerprint};
use crate::pipeline::Pipeline;
use crate::schema::{arrow_schema, value_type};
use crate::session::Session;

/// A partition of the source at a pinned version, from the log alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The pinned source version.
    pub source_version: TableVersion,
    /// Its data files.
    pub files: usize,
    /// Its rows, when the log has row counts.
    pub rows: Option<u64>,
    /// [`fingerprint`](crate::fingerprint()) of its files.
    pub fingerprint: String,
}

/// Reads what the source holds for `date` at `version` (or the latest), without
/// reading data.
pub async fn inspect_partition(
    session: &Session,
    pipeline: &Pipeline,
    date: PartitionDate,
    version: Option<TableVersion>,
) -> Result<PartitionInfo> {
    let source = open_source(session, &pipeline.source, &pipeline.source_storage, version).await?;
    let partitioning = &pipeline.partitioning;
    check_partitioned_by(&source, &pipeline.source, partitioning)?;
    let files = partition_files(&source, &pipeline.source, partitioning, date).await?;
    if version.is_some() {
        check_files_exist(session, &source, pipeline, date, &files).await?;
    }
    Ok(PartitionInfo {
        source_version: source.version().unwrap_or_default().into(),
        files: files.len(),
        rows: rows_from_stats(&files),
        fingerprint: files_fingerprint(&files),
    })
}

/// Opens the source at `version`, or at its latest version.
pub(crate) async fn open_source(
    session: &Session,
    url: &Url,
    options: &StorageOptions,
    version: Option<TableVersion>,
) -> Result<DeltaTable> {
    let not_found = |reason: String| Error::SourceNotFound {
        table: url.clone(),
        reason,
    };
    if is_local_without_log(url) {
        return Err(not_found(format!(
            "{} has no _delta_log directory",
            url.to_file_path().unwrap_or_default().display()
        )));
    }
    table_builder(url, options).map_err(|e| not_found(e.to_string()))?;
    // Once per process: later opens advance the table loaded first. A first load
    // starts from the newest checkpoint that covers the version, so a log whose early
    // commits were cleaned up reads as well as a whole one.
    let loaded = session
        .tables()
        .load(url, options, version.map(TableVersion::get))
        .await;
    match (loaded, version) {
        (Ok(table), _) => Ok(table),
        // An old version that does not load: say why, if the log tells.
        (Err(source), Some(requested)) => {
            Err(unreadable_version(url, options, requested, source).await)
        }
        (Err(DeltaTableError::NotATable(reason)), None) => Err(not_found(reason)),
        (Err(source), None) => {
            Err(load_error("source", url, options, "loading source", source).await)
        }
    }
}

/// The error for a table that failed to load: [`Error::DamagedLog`] when its log
/// is damaged (read again, by the detector's reader, to name the version), else the
/// load's own error.
pub(crate) async fn load_error(
    role: &'static str,
    url: &Url,
    options: &StorageOptions,
    action: &'static str,
    source: DeltaTableError,
) -> Error {
    match latefill_detector::log_damage(url, options).await {
        Some(damage) => Error::DamagedLog {
            role,
            table: url.clone(),
            source: damage,
        },
        None => Error::Delta {
            action,
            table: url.clone(),
            source,
        },
    }
}

/// Why version `requested` of the source did not load: beyond the latest, removed by
/// log cleanup, or else what delta-rs said.
pub(crate) async fn unreadable_version(
    url: &Url,
    options: &StorageOptions,
    requested: TableVersion,
    source: DeltaTableError,
) -> Error {
    match latefill_detector::log_bounds(url, options).await {
        Ok(bounds) if requested > bounds.latest => Error::SourceVersionNotFound {
            table: url.clone(),
            requested,
            latest: bounds.latest,
        },
        Ok(bounds) if requested < bounds.oldest => Error::SourceVersionUnavailable {
            table: url.clone(),
            requested,
            reason: "log cleanup removed the commits that rebuild it".into(),
            oldest: bounds.oldest,
            latest: bounds.latest,
        },
        _ => match source {
            DeltaTableError::NotATable(reason) => Error::SourceNotFound {
                table: url.clone(),
                reason,
            },
            source => load_error("source", url, options, "loading source", source).await,
        },
    }
}

/// Fails with [`Error::SourceVersionUnavailable`] when a data file of the partition
/// at the loaded (old) version was removed by VACUUM. The latest version is always
/// whole, so only pinned versions need this check: a HEAD request per file.
pub(crate) async fn check_files_exist(
    session: &Session,
    source: &DeltaTable,
    pipeline: &Pipeline,
    period: PartitionDate,
    files: &[LogicalFileView],
) -> Result<()> {
    let url = &pipeline.source;
    let Some(path) = first_missing_file(source, url, files).await? else {
        return Ok(());
    };
    let requested = source.version().unwrap_or_default();
    let latest = open_source(session, url, &pipeline.source_storage, None)
        .await?
        .version()
        .unwrap_or(requested);
    let oldest = oldest_whole_version(session, pipeline, period, requested, latest).await?;
    Err(Error::SourceVersionUnavailable {
        table: url.clone(),
        requested: requested.into(),
        reason: format!(
            "VACUUM removed its data file {path} of partition {}",
            pipeline.partition_name(period)
        ),
        oldest: oldest.into(),
        latest: latest.into(),
    })
}

/// The first of `files` whose data file no longer exists (VACUUM removed it).
pub(crate) async fn first_missing_file(
    table: &DeltaTable,
    url: &Url,
    files: &[LogicalFileView],
) -> Result<Option<String>> {
    use deltalake::ObjectStoreError;
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let store = table.log_store().object_store(None);
    let locations: Vec<(String, deltalake::Path)> = files
        .iter()
        .map(|f| (f.path().into_owned(), f.object_store_path()))
        .collect();
    let mut heads = futures::stream::iter(locations)
        .map(|(path, location)| {
            let store = store.clone();
            async move { (path, store.head(&location).await) }
        })
        .buffer_unordered(16);
    while let Some((path, head)) = heads.next().await {
        match head {
            Ok(_) => {}
            Err(ObjectStoreError::NotFound { .. }) => return Ok(Some(path)),
            Err(e) => {
                return Err(Error::Delta {
                    action: "checking data files of source",
                    table: url.clone(),
                    source: e.into(),
                });
            }
        }
    }
    Ok(None)
}

/// The oldest version after `requested` at which every file of the partition
/// exists, by bisection: VACUUM removes files that stopped being live before some
/// time, so versions from some point on are whole.
pub(crate) async fn oldest_whole_version(
    session: &Session,
    pipeline: &Pipeline,
    period: PartitionDate,
    requested: u64,
    latest: u64,
) -> Result<u64> {
    let url = &pipeline.source;
    let (mut low, mut high) = (requested + 1, latest);
    while low < high {
        let middle = low + (high - low) / 2;
        let table =
            open_source(session, url, &pipeline.source_storage, Some(middle.into())).await?;
        let files = partition_files(&table, url, &pipeline.partitioning, period).await?;
        if first_missing_file(&table, url, &files).await?.is_some() {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(high)
}

pub(crate) fn check_partitioned_by(
    table: &DeltaTable,
    url: &Url,
    partitioning: &Partitioning,
) -> Result<()> {
    let actual = table
        .snapshot()
        .map_err(|source| Error::Delta {
            action: "reading the metadata of source",
            table: url.clone(),
            source,
        })?
        .metadata()
        .partition_columns()
        .to_vec();
    match partitioning
        .columns()
        .into_iter()
        .find(|column| !actual.iter().any(|c| c == column))
    {
        None => Ok(()),
        Some(column) => Err(Error::NotPartitionedBy {
            table: url.clone(),
            column: column.to_owned(),
            actual,
        }),
    }
}

/// The active files of one pipeline partition, selected from the log without
/// reading data: those whose partition values fall in `period`
/// ([`Partitioning::period_of`], as the planner decides), whatever other columns the
/// table is partitioned by. `table` may be `None` (a target not created yet).
pub(crate) async fn partition_files<'a>(
    table: impl Into<Option<&'a DeltaTable>>,
    url: &Url,
    partitioning: &Partitioning,
    period: PartitionDate,
) -> Result<Vec<LogicalFileView>> {
    let Some(table) = table.into() else {
        return Ok(Vec::new());
    };
    let files: Vec<LogicalFileView> =
        latefill_core::storage::active_files(table)
            .await
            .map_err(|source| Error::Delta {
                action: "listing partition files of",
                table: url.clone(),
                source,
            })?;
    Ok(files
        .into_iter()
        .filter(|f| period_of_file(partitioning, f) == Some(period))
        .collect())
}

/// Starts reading the source files of the partitions of `dates` ahead of their runs,
/// from the source this process keeps: a run started next reads them from memory, or
/// waits for the read under way (see [`latefill_core::storage::read_ahead`]). One for
/// each date, in order; `None` where nothing is read ahead: no source kept, local
/// files, files past the budget, or a pipeline with a memory limit (the bytes held
/// would be outside it). The source's files are gone through once for all the dates.
pub async fn read_ahead(
    session: &Session,
    pipeline: &Pipeline,
    dates: &[PartitionDate],
) -> Vec<Option<latefill_core::storage::ReadAhead>> {
    let none = || dates.iter().map(|_| None).collect();
    if !reads_ahead(pipeline) || dates.is_empty() {
        return none();
    }
    let Some(source) = session
        .tables()
        .kept(&pipeline.source, &pipeline.source_storage)
    else {
        return none();
    };
    let Ok(files) = latefill_core::storage::active_files(&source).await else {
        return none();
    };
    let mut by_date: BTreeMap<PartitionDate, Vec<(deltalake::Path, u64)>> =
        dates.iter().map(|d| (*d, Vec::new())).collect();
    for file in &files {
        if let Some(period) = period_of_file(&pipeline.partitioning, file)
            && let Some(of_date) = by_date.get_mut(&period)
        {
            of_date.push((file.object_store_path(), file.size().max(0) as u64));
        }
    }
    dates
        .iter()
        .map(|d| {
            let files = by_date.remove(d).unwrap_or_default();
            latefill_core::storage::read_ahead(&pipeline.source, source.object_store(), files)
        })
        .collect()
}

/// Whether [`read_ahead`] reads anything for `pipeline`: its source is on an object
/// store and it sets no memory limit (the bytes held would be outside it). Asks nothing.
pub fn reads_ahead(pipeline: &Pipeline) -> bool {
    pipeline.memory_limit.is_none() && latefill_core::storage::reads_ahead(&pipeline.source)
}

/// The pipeline period a data file belongs to, from its partition values.
pub(crate) fn period_of_file(
    partitioning: &Partitioning,
    file: &LogicalFileView,
) -> Option<PartitionDate> {
    let values = file.partition_values_map();
    partitioning
        .period_of(|column| values.get(column).map(|v| v.as_deref()))
        .ok()
}

/// The distinct raw values of each partitioning column among `files`.
pub(crate) fn raw_values(
    files: &[LogicalFileView],
    partitioning: &Partitioning,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let values = file.partition_values_map();
        for column in partitioning.columns() {
            if let Some(Some(value)) = values.get(column) {
                out.entry(column.to_owned())
                    .or_default()
                    .insert(value.clone());
            }
        }
    }
    out
}

/// Values of `column`'s type inside `period`: its own form for strings, its start for
/// dates and timestamps; for a split hour's hour column, the hour with and without a
/// leading zero. Part of the target predicate, so that a partition written empty, or
/// by SQL that truncates the column to the period, is replaced too.
pub(crate) fn period_literals(
    partitioning: &Partitioning,
    column: &str,
    period: PartitionDate,
    data_type: &DataType,
) -> Vec<String> {
    use chrono::Timelike;
    if partitioning.hour_column() == Some(column) {
        let hour = period.start().hour();
        return if data_type.is_integer() {
            vec![hour.to_string()]
        } else {
            vec![hour.to_string(), format!("{hour:02}")]
        };
    }
    let text = match data_type {
        DataType::Date32 | DataType::Date64 => period.date().format("%Y-%m-%d").to_string(),
        DataType::Timestamp(..) => period.start().format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => partitioning.value_of(period),
    };
    vec![text]
}

/// Registers the partition's rows as the table `source`: those whose partition
/// columns hold one of `values` (every column's raw values among the partition's
/// files).
///
/// The Delta provider gets the partition predicate pushed down and prunes files from
/// the log, so files of other partitions are never opened. With `only`, the provider
/// reads those files of the table alone (an incremental update's late files).
pub(crate) async fn register_source(
    ctx: &SessionContext,
    table: &DeltaTable,
    url: &Url,
    values: &BTreeMap<String, BTreeSet<String>>,
    only: Option<&[String]>,
) -> Result<()> {
    let internal = |e: DataFusionError| Error::Internal(format!("registering source {url}: {e}"));
    if values.is_empty() {
        let schema = arrow_schema(table, url, "reading the schema of source")?;
        let empty = MemTable::try_new(schema, vec![vec![]]).map_err(internal)?;
        ctx.register_table("source", Arc::new(empty))
            .map_err(internal)?;
        return Ok(());
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|source| Error::Delta {
            action: "registering the storage of source",
            table: url.clone(),
            source,
        })?;
    let provider = match only {
        Some(files) => table.table_provider().with_file_paths(files.to_vec()).await,
        None => table.table_provider().await,
    }
    .map_err(internal)?;
    let mut rows = ctx.read_table(provider).map_err(internal)?;
    // The literal of a raw partition value, in its column's type.
    let mut typed: BTreeMap<&str, DataType> = BTreeMap::new();
    for column in values.keys() {
        let data_type = rows
            .schema()
            .as_arrow()
            .field_with_name(column)
            .map(|f| value_type(f.data_type()))
            .map_err(|e| internal(e.into()))?;
        typed.insert(column, data_type);
    }
    let literal = |column: &str, v: &str| cast(lit(v.to_owned()), typed[column].clone());
    // The partition's source partitions by their values: pushed down, they prune the
    // files of every other partition from the log.
    for (column, members) in values {
        rows = rows
            .filter(
                Expr::Column(Column::from_name(column))
                    .in_list(members.iter().map(|v| literal(column, v)).collect(), false),
            )
            .map_err(internal)?;
    }
    // A column with one value is a constant within the partition: present it as a
    // literal rather than the scan's per-row dictionary column. DataFusion then folds
    // it, e.g. out of GROUP BY keys; grouping 5M rows by it otherwise cost about two
    // thirds of a run of the default pipeline.
    let constant = |name: &str| {
        values
            .get(name)
            .filter(|members| members.len() == 1)
            .and_then(|members| members.first())
    };
    let columns: Vec<Expr> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| match constant(f.name()) {
            Some(value) => literal(f.name(), value).alias(f.name()),
            None => Expr::Column(Column::from_name(f.name())),
        })
        .collect();
    let rows = rows.select(columns).map_err(internal)?;
    ctx.register_table("source", rows.into_view())
        .map_err(internal)?;
    Ok(())
}

/// The schema of the table `source` registered in `ctx`.
pub(crate) async fn registered_schema(
    ctx: &deltalake::datafusion::prelude::SessionContext,
) -> Result<deltalake::arrow::datatypes::SchemaRef> {
    let source = ctx
        .table("source")
        .await
        .map_err(|e| Error::Internal(format!("the registered source: {e}")))?;
    Ok(Arc::new(source.schema().as_arrow().clone()))
}

/// Rows in the files according to their log statistics, less deleted rows; `None`
/// when a file has no row count.
pub(crate) fn rows_from_stats(files: &[LogicalFileView]) -> Option<u64> {
    files.iter().try_fold(0u64, |total, file| {
        let records = file.num_records()? as u64;
        let deleted = file
            .deletion_vector_descriptor()
            .map_or(0, |dv| dv.cardinality.max(0) as u64);
        Some(total + records.saturating_sub(deleted))
    })
}

pub(crate) async fn count_rows(ctx: &SessionContext, partition: &PartitionKey) -> Result<u64> {
    let execution = |source| Error::Execution {
        partition: partition.clone(),
        source,
    };
    let count = ctx
        .table("source")
        .await
        .map_err(execution)?
        .count()
        .await
        .map_err(execution)?;
    Ok(count as u64)
}

/// The fingerprint of every partition of the pipeline in its source at the latest
/// version, by partition; files whose value names no period of the pipeline's
/// granularity are left out.
pub async fn partition_fingerprints(
    session: &Session,
    pipeline: &Pipeline,
) -> Result<BTreeMap<PartitionKey, String>> {
    let source = &pipeline.source;
    let table = open_source(session, source, &pipeline.source_storage, None).await?;
    let files: Vec<LogicalFileView> =
        latefill_core::storage::active_files(&table)
            .await
            .map_err(|e| Error::Delta {
                action: "listing files of source",
                table: source.clone(),
                source: e,
            })?;
    let mut identities: BTreeMap<PartitionKey, Vec<String>> = Default::default();
    for file in &files {
        if let Some(period) = period_of_file(&pipeline.partitioning, file) {
            identities
                .entry(pipeline.partitioning.key(period))
                .or_default()
                .push(file_identity(file));
        }
    }
    Ok(identities
        .into_iter()
        .map(|(k, v)| (k, fingerprint(v.iter().map(String::as_str))))
        .collect())
}
