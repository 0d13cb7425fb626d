//! Replacing one partition of a target latefill can write itself, in two steps:
//!
//! 1. [`write_files`]: the transform's rows become data files of the target, not yet
//!    part of it. Concurrent partition runs do this side by side.
//! 2. [`commit`]: one commit adds those files and removes the partition's old ones.
//!    A process makes its commits to a target one at a time. When every commit since
//!    the version a run read is the process's own, for other partitions, the run's
//!    commit goes straight to the next version: nothing it read has changed.
//!
//! delta-rs's `write` does both in one call, on the table version it was given: two
//! runs started together both try the next version, and the loser re-reads the
//! winner's commit and brings its whole file list up to date before it tries again.
//! Its post-commit step then brings the table to the new version once more, which
//! the next commit of the process waited for. Other writers of the target (other
//! processes, other machines) still race as before: a version taken meanwhile sends
//! the commit through delta-rs's commit loop, which checks the commits in between for
//! conflicts.
//!
//! Only targets without the features whose rules delta-rs's `write` enforces on the
//! rows (invariants, CHECK constraints, generated and identity columns, column
//! mapping, deletion vectors, row tracking, any table feature) are written this way:
//! see [`supported`]. Every target latefill creates is one. Others, and a target not
//! created yet, are written by delta-rs's `write`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::datafusion::common::{Column, ScalarValue};
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, cast};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::expr::fmt_expr_to_sql;
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::operations::write::configs::WriterStatsConfig;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use url::Url;

use crate::error::{Error, Result};
use crate::group::Look;
use crate::source::partition_files;
use crate::target::write_error;
use latefill_core::partition::{PartitionDate, PartitionKey, Partitioning};
use latefill_core::storage::{StorageOptions, Tables};

use crate::group::{Change, Place, Put, Turn, put_at};
use crate::session::{Pending, Session};

/// Whether latefill writes `target` itself ([`write_files`] and [`commit`]) rather
/// than through delta-rs's `write`: its protocol asks for nothing beyond plain data
/// files (writer version 2 at most, no table features) and its schema has no
/// invariants. Writer version 2 also allows `delta.appendOnly`, which the commit's
/// protocol check enforces.
pub(crate) fn supported(target: &DeltaTable) -> bool {
    let Ok(state) = target.snapshot() else {
        return false;
    };
    let protocol = state.protocol();
    if protocol.min_writer_version() > 2 || protocol.writer_features().is_some() {
        return false;
    }
    let schema = state.schema();
    // An invariant is a column's `delta.invariants` metadata, at any depth; a nested
    // column's metadata shows in the schema's JSON.
    !serde_json::to_string(schema.as_ref()).is_ok_and(|json| json.contains("delta.invariants"))
}

/// What [`write_files`] wrote.
pub(crate) struct Written {
    pub(crate) adds: Vec<Add>,
    pub(crate) rows: u64,
}

/// Runs `result` and writes its rows as data files of `target`, in the target's
/// column order and types, partitioned by its partition columns; nothing is
/// committed. Every row must satisfy `predicate` (the partition's values): a row of
/// another partition fails the run, as it fails delta-rs's replace-where.
pub(crate) async fn write_files(
    ctx: &SessionContext,
    result: DataFrame,
    target: &DeltaTable,
    url: &Url,
    partition: &PartitionKey,
    predicate: &Expr,
) -> Result<Written> {
    let execution = |source: DataFusionError| Error::Execution {
        partition: partition.clone(),
        source,
    };
    let delta = |source: DeltaTableError| Error::Delta {
        action: "writing target",
        table: url.clone(),
        source,
    };
    let state = target.snapshot().map_err(delta)?;
    let schema: SchemaRef = state.snapshot().arrow_schema();
    let partition_columns = state.metadata().partition_columns().to_vec();

    // The target's columns, in its order and of its types.
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            cast(
                Expr::Column(Column::from_name(f.name())),
                f.data_type().clone(),
            )
            .alias(f.name())
        })
        .collect::<Vec<_>>();
    let result = result.select(columns).map_err(execution)?;
    let check = ctx
        .create_physical_expr(predicate.clone(), result.schema())
        .map_err(execution)?;
    let mut batches = result.execute_stream().await.map_err(execution)?;

    let stats = WriterStatsConfig::from_config(state.snapshot().table_configuration());
    let config = WriterConfig::new(
        schema.clone(),
        partition_columns,
        None,
        Some(state.table_config().target_file_size()),
        None,
        stats.num_indexed_cols,
        stats.stats_columns,
    );
    let mut writer = DeltaWriter::new(target.log_store().object_store(None), config);
    let mut rows = 0u64;
    let outcome: Result<()> = async {
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(execution)?;
            // Also checks that non-nullable columns hold no nulls.
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .map_err(|e| execution(e.into()))?;
            let matches = check
                .evaluate(&batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .map_err(execution)?;
            let matches = matches.as_boolean();
            if matches.true_count() != batch.num_rows() {
                let row = (0..batch.num_rows())
                    .find(|&i| matches.is_null(i) || !matches.value(i))
                    .expect("a row failed the check");
                return Err(execution(DataFusionError::Execution(format!(
                    "the transform returned a row outside partition {partition}: {}; \
                     the partition columns of its rows must hold the partition's values",
                    describe_row(&batch, row)
                ))));
            }
            rows += batch.num_rows() as u64;
            writer.write(&batch).await.map_err(delta)?;
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(Written {
            adds: writer.close().await.map_err(delta)?,
            rows,
        }),
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(table = %url, error = %abort, "target: could not abort a file upload");
            }
            Err(e)
        }
    }
}

/// `column = value, ...` for one row of `batch`.
fn describe_row(batch: &RecordBatch, row: usize) -> String {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let value = ScalarValue::try_from_array(column, row)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| "?".to_owned());
            format!("{} = {value}", field.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a run of `partition` may read the target at `url` at version `read`
/// rather than at its latest: every commit since is this process's own, each for
/// another partition, so none changed the partition's files or the target's schema;
/// and there are few of them ([`UNREAD_OWN_COMMITS`]). Its commit then goes straight
/// after this process's last (see [`commit`]); another process's commit meanwhile is
/// found there, by the put-if-absent of the next version, and checked by delta-rs's
/// commit loop.
///
/// This spares a run the reading of the commits of the runs beside it. What it costs
/// instead is a look at this process's last commit file (one request on an object
/// store, which the runs that ask while it is under way share: see
/// [`Commits::look`](crate::group::Commits::look)): a target deleted, or deleted and
/// created again, under a running process has no such file, or another one there.
///
/// `Some(look)` when the run may read the table kept, as it is, if the look says the
/// commit is still there. The look goes on while the run reads the source and writes
/// its files, and the run awaits it before it commits: where the look says no, the
/// run's files are deleted and it is run again on the target loaded afresh, not
/// advanced from the table kept, whose commits are not that table's. `None`: read the
/// latest.
pub(crate) async fn may_read(
    session: &Session,
    url: &Url,
    kept: &DeltaTable,
    partition: &PartitionKey,
) -> Option<Look> {
    let state = kept.snapshot().ok()?;
    let (head, size) = {
        let mut chain = session.commits(url).chain.clone().lock_owned().await;
        chain.of_table(state.metadata().id());
        if !chain.may_read(state.version(), partition.as_str()) {
            return None;
        }
        (chain.head?, chain.head_size?)
    };
    use futures::FutureExt;
    use object_store::ObjectStoreExt;
    let store = kept.log_store().object_store(None);
    let ask = move || {
        async move {
            let file = object_store::path::Path::from(format!("_delta_log/{head:020}.json"));
            // Gone, another commit there, or the store could not say: not ours.
            matches!(store.head(&file).await, Ok(meta) if meta.size == size)
        }
        .boxed()
    };
    Some(session.commits(url).look(head, size, ask))
}

/// Deletes the data files a run wrote to the target at `url` and will not commit
/// (the table it read is gone): what is left is a warning, not an error.
pub(crate) async fn delete_written(target: &DeltaTable, url: &Url, written: &Written) {
    use object_store::ObjectStoreExt;
    let store = target.object_store();
    for add in &written.adds {
        let path = object_store::path::Path::parse(&add.path)
            .unwrap_or_else(|_| object_store::path::Path::from(add.path.as_str()));
        if let Err(error) = store.delete(&path).await {
            tracing::warn!(table = %url, file = %add.path, %error, "target: could not delete a data file not committed");
        }
        // A local store leaves the partition's folders the write made: where the
        // table was deleted, they would make its folder look like someone else's.
        if let Ok(root) = url.to_file_path() {
            let mut folder = std::path::Path::new(path.as_ref()).parent();
            while let Some(relative) = folder.filter(|f| !f.as_os_str().is_empty()) {
                if std::fs::remove_dir(root.join(relative)).is_err() {
                    break; // not empty: another file is there
                }
                folder = relative.parent();
            }
        }
    }
}

/// Commits the `written` files to the target at `url`, replacing the files of
/// `period` in `target` (the version the run read): a replace-where overwrite
/// whose predicate is `predicate`, with `txn` and latefill's commit info entry `info`.
/// Returns the version of the commit.
///
/// Commits of one process are made one at a time. When every commit since `target`'s
/// version is this process's own, for other partitions ([`Chain::next_after`]), or the
/// process knows of none ([`Chain::commit_at`]), the commit is written at the next
/// version straight away, put-if-absent: nothing it read has changed, so there is
/// nothing to check, and delta-rs does not read the commit back. The runs that finish
/// while a commit is being made go together in the next one ([`crate::group`]).
/// Otherwise, or when another writer took that version meanwhile, delta-rs's commit
/// loop checks the commits in between for conflicts and retries. Checkpoints are
/// written after the process's next commit may start; with
/// `checkpoint_in_background`, by a task of their own (see
/// [`Session::checkpoints_written`]).
///
/// [`Chain::next_after`]: crate::chain::Chain::next_after
/// [`Chain::commit_at`]: crate::chain::Chain::commit_at
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit(
    session: &Session,
    url: &Url,
    options: &StorageOptions,
    target: &DeltaTable,
    partitioning: &Partitioning,
    period: PartitionDate,
    partition: &PartitionKey,
    written: Written,
    predicate: &Expr,
    info: serde_json::Value,
    txn: Transaction,
    checkpoint_in_background: bool,
) -> Result<u64> {
    let delta = |source: DeltaTableError| Error::Delta {
        action: "writing target",
        table: url.clone(),
        source,
    };
    let failed = |source: DeltaTableError| write_error(url, partition, source);
    let removes = partition_files(target, url, partitioning, period).await?;
    let change = Change {
        partition: partition.as_str().to_owned(),
        target: target.clone(),
        adds: written.adds,
        removes: removes
            .iter()
            .map(|f| Action::Remove(f.remove_action(true)))
            .collect(),
        txn,
        info,
        rows: written.rows,
        predicate: fmt_expr_to_sql(predicate).map_err(delta)?,
        partition_by: partitioning
            .columns()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    let commits = session.commits(url);
    let ticket = commits.queue(change);
    #[cfg(test)]
    drop(commits.gate.read().await);
    let chain = commits.chain.clone().lock_owned().await;
    let place = Place {
        session: session.clone(),
        url: url.clone(),
        options: options.clone(),
        checkpoint_in_background,
    };
    let (change, mut chain) = match crate::group::turn(&commits, ticket, chain, place).await {
        Turn::Committed(version) => return Ok(version),
        Turn::Alone(change, chain) => (change, chain),
        Turn::Lost => {
            return Err(Error::Internal(format!(
                "target {url}: the commit that carried partition {partition} with the runs \
                 that finished beside it ended without saying whether it landed; the \
                 partition is processed again by the next run"
            )));
        }
    };

    // Alone: as of the version this run read.
    let state = change.target.snapshot().map_err(delta)?;
    let read = state.version();
    chain.of_table(state.metadata().id());
    if let Some(version) = chain.commit_at(read, partition.as_str()) {
        let prepared = crate::group::prepare(&[&change], &change.target)
            .await
            .map_err(failed)?;
        // A version another process took meanwhile: the commit loop below checks its
        // commit for conflicts, and the runs after read it.
        let started = std::time::Instant::now();
        if let Put::Landed = put_at(&mut chain, version, &prepared, &change.target)
            .await
            .map_err(failed)?
        {
            commits.set_linger(Some(started.elapsed()));
            drop(chain);
            tracing::debug!(table = %url, version, "target: committed after this process's own commits");
            checkpoint(
                session,
                url,
                options,
                &change.target,
                version,
                checkpoint_in_background,
            )
            .await;
            return Ok(version);
        }
    }
    let started = std::time::Instant::now();
    let (finalized, size) = crate::group::commit_checked(&[&change], state)
        .await
        .map_err(failed)?;
    commits.set_linger(Some(started.elapsed()));
    chain.committed(finalized.version, &[partition.as_str()], size);
    drop(chain);
    let mut table = change.target.clone();
    table.state = Some(finalized.snapshot);
    session.tables().remember(url, options, &table);
    checkpoint(
        session,
        url,
        options,
        &table,
        finalized.version,
        checkpoint_in_background,
    )
    .await;
    Ok(finalized.version)
}

/// Writes the checkpoint of `version` when the target's checkpoint interval (as of
/// `table`, which may be older) says so ([`write_checkpoint_at`]), here or,
/// `in_background`, in a task of its own that [`Session::checkpoints_written`] waits
/// for.
pub(crate) async fn checkpoint(
    session: &Session,
    url: &Url,
    options: &StorageOptions,
    table: &DeltaTable,
    version: u64,
    in_background: bool,
) {
    if !checkpoint_due(table, version) {
        return;
    }
    if !in_background {
        let reload = AtomicBool::new(true);
        return write_checkpoint_at(session.tables(), url, options, table, version, &reload).await;
    }
    session.chain_checkpoint(url, |previous| {
        let reload = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let (url, options, table) = (url.clone(), options.clone(), table.clone());
            let (reload, tables) = (reload.clone(), session.tables().clone());
            async move {
                if let Some(previous) = previous {
                    let _ = previous.task.await;
                }
                write_checkpoint_at(&tables, &url, &options, &table, version, &reload).await;
            }
        });
        Pending { task, reload }
    });
}

/// Whether the commit of `version` is due a checkpoint by the target's checkpoint
/// interval (as of `table`).
fn checkpoint_due(table: &DeltaTable, version: u64) -> bool {
    table
        .snapshot()
        .is_ok_and(|state| latefill_core::storage::checkpoint_due(state.table_config(), version))
}

/// Writes the checkpoint of `version`, as delta-rs's post-commit step would, and then
/// removes expired commits. Best effort: the commit has landed, and a reader replays a
/// few more commits until the next checkpoint.
///
/// The table this process keeps is then loaded afresh from that checkpoint, while
/// `reload` says so: the runs that read it as it is ([`may_read`]) start from there.
async fn write_checkpoint_at(
    tables: &Tables,
    url: &Url,
    options: &StorageOptions,
    table: &DeltaTable,
    version: u64,
    reload: &AtomicBool,
) {
    let started = std::time::Instant::now();
    let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1000.0;
    if let Err(e) =
        latefill_core::storage::write_checkpoint(table.log_store().as_ref(), version).await
    {
        tracing::warn!(table = %url, version, error = %e, "target: could not write a checkpoint");
        return;
    }
    let written = ms(started);
    crate::target::cleanup_expired_logs_at_checkpoint(table, url, version).await;
    let cleaned = ms(started);
    let reloaded = reload.load(Ordering::Relaxed);
    if reloaded && let Err(e) = tables.load_afresh(url, options, version).await {
        tracing::debug!(table = %url, version, error = %e, "target: could not load the checkpoint just written");
    }
    tracing::debug!(table = %url, version, write_ms = written, cleanup_ms = cleaned - written, reloaded, load_ms = ms(started) - cleaned, "target: checkpoint written");
}
