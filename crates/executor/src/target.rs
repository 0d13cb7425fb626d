//! The target side of a run: opening it (or its location), its schema against the
//! result, its `txn` per partition, and its log's upkeep at checkpoints.

use std::collections::BTreeMap;

use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::error::DataFusionError;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use latefill_core::storage::{is_local_without_log, table_builder};
use latefill_core::{PartitionKey, TableVersion};
use url::Url;

use crate::error::{Error, Result};
use crate::group::Look;
use crate::pipeline::Pipeline;
use crate::schema::{arrow_schema, delta_type, value_type};
use crate::session::Session;
use crate::source::load_error;

/// The target's latest version and the source version its log records for
/// `partition` (its `txn`); `None` when the target does not exist.
pub async fn target_txn_version(
    session: &Session,
    pipeline: &Pipeline,
    partition: &PartitionKey,
) -> Result<Option<(TableVersion, Option<TableVersion>)>> {
    let Some(target) = open_target(session, pipeline).await? else {
        return Ok(None);
    };
    Ok(Some((
        target.version().unwrap_or_default().into(),
        txn_of(&target, pipeline, partition).await?,
    )))
}

/// The source version `target`'s log records for `partition` (its `txn`).
pub(crate) async fn txn_of(
    target: &DeltaTable,
    pipeline: &Pipeline,
    partition: &PartitionKey,
) -> Result<Option<TableVersion>> {
    let delta = |source| Error::Delta {
        action: "reading the txn of target",
        table: pipeline.target.clone(),
        source,
    };
    let version = target
        .snapshot()
        .map_err(delta)?
        .transaction_version(target.log_store().as_ref(), pipeline.app_id(partition))
        .await
        .map_err(delta)?;
    Ok(version
        .and_then(|v| u64::try_from(v).ok())
        .map(TableVersion::new))
}

/// After the commit of `version`, when it was checkpointed: removes the commits older
/// than the target's log retention (`delta.logRetentionDuration`, 30 days by default),
/// as Delta writers do at checkpoints, unless `delta.enableExpiredLogCleanup` is off.
/// Best effort: the write has landed, and the next checkpoint tries again.
pub(crate) async fn cleanup_expired_logs_at_checkpoint(
    table: &DeltaTable,
    url: &Url,
    version: u64,
) {
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    if let Err(e) = latefill_core::storage::cleanup_expired_logs(
        table.log_store().as_ref(),
        snapshot.table_config(),
        version,
    )
    .await
    {
        tracing::warn!(table = %url, version, error = %e, "target: log cleanup failed");
    }
}

/// The type of the partition column in the target, or in the result when the target
/// does not exist yet.
pub(crate) fn target_column_type(
    target: &Option<DeltaTable>,
    url: &Url,
    column: &str,
    result: &Schema,
) -> Result<DataType> {
    let field_type = |schema: &Schema| {
        schema
            .field_with_name(column)
            .ok()
            .map(|f| value_type(f.data_type()))
    };
    let from_target = match target {
        Some(t) => field_type(arrow_schema(t, url, "reading the schema of target")?.as_ref()),
        None => None,
    };
    from_target
        .or_else(|| field_type(result))
        .ok_or_else(|| Error::Internal(format!("no column {column} in the result or target {url}")))
}

/// Opens the target, or `None` when no table exists there yet.
pub(crate) async fn open_target(
    session: &Session,
    pipeline: &Pipeline,
) -> Result<Option<DeltaTable>> {
    let (url, options) = (&pipeline.target, &pipeline.target_storage);
    if is_local_without_log(url) {
        return Ok(None);
    }
    match session.tables().load(url, options, None).await {
        Ok(table) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(source) => Err(load_error("target", url, options, "opening target", source).await),
    }
}

/// Opens the target for a run of `partition`: the table this process keeps, as it is,
/// when the commits after its version are a few of this process's own for other
/// partitions, with the look that tells whether that table is still there, which the
/// run awaits before it commits ([`crate::replace::may_read`]); else the latest, as
/// [`open_target`].
pub(crate) async fn open_target_for(
    session: &Session,
    pipeline: &Pipeline,
    partition: &PartitionKey,
) -> Result<(Option<DeltaTable>, Option<Look>)> {
    let kept = session
        .tables()
        .kept(&pipeline.target, &pipeline.target_storage);
    if let Some(kept) = kept
        && let Some(look) =
            crate::replace::may_read(session, &pipeline.target, &kept, partition).await
    {
        return Ok((Some(kept), Some(look)));
    }
    Ok((open_target(session, pipeline).await?, None))
}

/// A handle on a target that does not exist yet; the first write creates it.
pub(crate) async fn create_target_handle(pipeline: &Pipeline) -> Result<DeltaTable> {
    let url = &pipeline.target;
    let delta = |source| Error::Delta {
        action: "creating target",
        table: url.clone(),
        source,
    };
    // A local store writes into an existing directory; object stores have none.
    if let Ok(path) = url.to_file_path() {
        std::fs::create_dir_all(&path).map_err(|e| delta(DeltaTableError::from(e)))?;
    }
    let table = table_builder(url, &pipeline.target_storage)
        .and_then(DeltaTableBuilder::build)
        .map_err(delta)?;
    latefill_core::storage::prepare_new_table(&table, url, "target").await?;
    Ok(table)
}

/// Compares the result's columns with the target's: same names, same order, types
/// that Delta stores alike.
pub(crate) fn check_target_schema(target: &DeltaTable, url: &Url, result: &Schema) -> Result<()> {
    let expected = arrow_schema(target, url, "reading the schema of target")?;
    let mismatch = |difference: String| Error::SchemaMismatch {
        table: url.clone(),
        difference,
    };
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    if names(&expected) != names(result) {
        let mut target_sorted = names(&expected);
        let mut result_sorted = names(result);
        target_sorted.sort();
        result_sorted.sort();
        if target_sorted != result_sorted {
            return Err(mismatch(format!(
                "target has columns {:?}, result has {:?}",
                names(&expected),
                names(result)
            )));
        }
    }
    for field in expected.fields() {
        let found = result
            .field_with_name(field.name())
            .expect("names compared above");
        if delta_type(field.data_type()) != delta_type(found.data_type()) {
            return Err(mismatch(format!(
                "column {:?}: target has {}, result has {}",
                field.name(),
                field.data_type(),
                found.data_type()
            )));
        }
    }
    Ok(())
}

pub(crate) fn write_error(url: &Url, partition: &PartitionKey, source: DeltaTableError) -> Error {
    use deltalake::kernel::transaction::TransactionError;
    match source {
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_),
        } => Error::TargetConflict {
            table: url.clone(),
            partition: partition.clone(),
            attempts: 1,
            source,
        },
        DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. } => Error::Delta {
            action: "writing target",
            table: url.clone(),
            source,
        },
        // Anything else failed while computing or validating the partition's rows.
        other => Error::Execution {
            partition: partition.clone(),
            source: DataFusionError::External(Box::new(other)),
        },
    }
}

/// Reads `num_added_rows` from the operation metrics of the table's last commit.
pub(crate) async fn rows_added_by_last_commit(table: &DeltaTable, url: &Url) -> Result<u64> {
    let info = table
        .history(Some(1))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|source| Error::Delta {
            action: "reading the last commit of target",
            table: url.clone(),
            source,
        })?;
    info.first()
        .and_then(|c| c.info.get("operationMetrics"))
        .and_then(|m| m.get("num_added_rows"))
        .and_then(|n| n.as_u64())
        .ok_or_else(|| Error::Internal(format!("target {url}: last commit has no num_added_rows")))
}

/// Per target partition, the source version its `txn` records (what `latefill state
/// rebuild` restores), and the transform
/// version that latefill's entry in the commit info of the partition's last commit
/// records (`None` when log cleanup removed that commit).
pub async fn processed_partitions(
    pipeline: &Pipeline,
) -> Result<BTreeMap<PartitionKey, (TableVersion, Option<String>)>> {
    use futures::TryStreamExt;
    let delta = |source| Error::Delta {
        action: "reading target",
        table: pipeline.target.clone(),
        source,
    };
    let target = latefill_core::storage::open_table(&pipeline.target, &pipeline.target_storage)
        .await
        .map_err(delta)?;
    let files: Vec<_> = latefill_core::storage::active_files(&target)
        .await
        .map_err(delta)?;
    let mut partitions = std::collections::BTreeSet::new();
    for file in &files {
        let values = file.partition_values_map();
        let value = |column: &str| values.get(column).map(Option::as_deref);
        match pipeline.partitioning.period_of(value) {
            Ok(date) => {
                partitions.insert(pipeline.partitioning.key(date));
            }
            Err(reason) => {
                tracing::warn!(target_table = %pipeline.target, file = %file.path(), reason, "not restored")
            }
        }
    }
    // Newest commit first: the first entry for a partition is its last write.
    let mut transforms: BTreeMap<String, String> = BTreeMap::new();
    let infos: Vec<_> = target.history(None).try_collect().await.map_err(delta)?;
    for info in &infos {
        // One entry, or a list of them for a commit that carried several runs.
        let entries = match info.info.get(crate::run::COMMIT_INFO_KEY) {
            Some(serde_json::Value::Array(entries)) => entries.iter().collect(),
            Some(entry) => vec![entry],
            None => continue,
        };
        for entry in entries {
            if entry["pipeline"] != pipeline.name.as_str() {
                continue;
            }
            if let (Some(p), Some(t)) = (entry["partition"].as_str(), entry["transform"].as_str()) {
                transforms
                    .entry(p.to_owned())
                    .or_insert_with(|| t.to_owned());
            }
        }
    }
    let snapshot = target.snapshot().map_err(delta)?;
    let mut out = BTreeMap::new();
    for partition in partitions {
        let version = snapshot
            .transaction_version(target.log_store().as_ref(), pipeline.app_id(&partition))
            .await
            .map_err(delta)?;
        if let Some(v) = version.and_then(|v| u64::try_from(v).ok()) {
            let transform = transforms.get(partition.as_str()).cloned();
            out.insert(partition, (TableVersion::new(v), transform));
        }
    }
    Ok(out)
}
