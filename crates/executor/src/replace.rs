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

use std::collections::BTreeMap;
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
use deltalake::kernel::transaction::{
    CommitBuilder, CommitProperties, TableReference, TransactionError,
};
use deltalake::kernel::{Action, Add};
use deltalake::logstore::CommitOrBytes;
use deltalake::operations::write::configs::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use url::Url;

use crate::error::{Error, Result};
use crate::source::partition_files;
use crate::target::write_error;
use latefill_core::partition::{PartitionDate, Partitioning};
use latefill_core::storage::{StorageOptions, Tables};

use crate::session::Session;

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
    partition: &str,
    predicate: &Expr,
) -> Result<Written> {
    let execution = |source: DataFusionError| Error::Execution {
        partition: partition.to_owned(),
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

/// How many of this process's commits to a target [`Chain`] remembers.
const CHAIN_MEMORY: usize = 1024;

/// At most how many of this process's own commits a run may read the target without
/// ([`may_read`]). It bounds the commits that delta-rs's commit loop replays when it
/// starts from the version the run read. The table kept is brought up to date at
/// checkpoints, every 10 commits for a target latefill created; twice that leaves
/// room for a checkpoint written in the background (see [`commit`]) to land first.
const UNREAD_OWN_COMMITS: u64 = 20;

/// This process's commits to one target, made one at a time.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// The Delta metadata id of the table the commits went to. A table deleted and
    /// created again at the same location has another: its chain starts afresh.
    table: Option<String>,
    /// The version of this process's last commit to the target.
    head: Option<u64>,
    /// The size in bytes of that commit's file, when known: how a run that reads the
    /// target as this process last loaded it tells that the commit is still there.
    head_size: Option<u64>,
    /// The partition each of its recent commits replaced, by version.
    ours: BTreeMap<u64, String>,
    /// The newest version another writer took when this process tried to commit there:
    /// this process's view of the target is behind it until a run reads it.
    taken: Option<u64>,
}

impl Chain {
    /// The version after `head` when every commit after `read` (the version a run
    /// read) is this process's own, each for a partition other than `partition`:
    /// then the run's removes are still exact and its commit conflicts with none of
    /// them. `None` when the chain knows no head yet, the run read a newer version
    /// than the head (another writer's commits), or one of the commits between is not
    /// this process's or replaced `partition`.
    fn next_after(&self, read: u64, partition: &str) -> Option<u64> {
        let head = self.head.filter(|&head| head >= read)?;
        (read + 1..=head)
            .all(|v| self.ours.get(&v).is_some_and(|p| p != partition))
            .then_some(head + 1)
    }

    /// The version a run that read `read` commits at straight away: the one after this
    /// process's own commits ([`Chain::next_after`]), or `read + 1` when the process
    /// knows of no commit after `read` (it has made none since, and found no version
    /// after it taken). That commit is put-if-absent: when another writer took the
    /// version meanwhile, it fails, and the commit goes through the conflict check.
    fn commit_at(&self, read: u64, partition: &str) -> Option<u64> {
        let none_since = self.head.is_none_or(|head| head < read)
            && self.taken.is_none_or(|taken| taken <= read);
        self.next_after(read, partition)
            .or(none_since.then_some(read + 1))
    }

    /// Whether a run of `partition` may read the target at `read` as it is: the
    /// commits after it are this process's own, for other partitions (see
    /// [`Chain::next_after`]), there are at most [`UNREAD_OWN_COMMITS`], and no
    /// version after `read` was found taken by another writer.
    fn may_read(&self, read: u64, partition: &str) -> bool {
        self.taken.is_none_or(|taken| taken <= read)
            && self
                .head
                .is_some_and(|head| head <= read + UNREAD_OWN_COMMITS)
            && self.next_after(read, partition).is_some()
    }

    /// Another writer took `version`, which this process tried to commit at.
    fn found_taken(&mut self, version: u64) {
        self.taken = Some(self.taken.map_or(version, |t| t.max(version)));
    }

    /// Starts the chain afresh unless its commits went to the table with id `table`.
    fn of_table(&mut self, table: &str) {
        if self.table.as_deref() != Some(table) {
            *self = Chain {
                table: Some(table.to_owned()),
                ..Chain::default()
            };
        }
    }

    /// This process committed `partition` at `version`, a commit file of `size`
    /// bytes when known.
    fn committed(&mut self, version: u64, partition: &str, size: Option<u64>) {
        if self.head.is_none_or(|head| version >= head) {
            self.head = Some(version);
            self.head_size = size;
        }
        self.ours.insert(version, partition.to_owned());
        while self.ours.len() > CHAIN_MEMORY {
            self.ours.pop_first();
        }
    }
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
/// store): a target deleted, or deleted and created again, under a running process
/// has no such file, or another one there, and is then read afresh: not advanced from
/// the table kept, whose commits are not that table's ([`KeptRead::Afresh`]).
pub(crate) async fn may_read(
    session: &Session,
    url: &Url,
    kept: &DeltaTable,
    partition: &str,
) -> KeptRead {
    let Ok(state) = kept.snapshot() else {
        return KeptRead::Latest;
    };
    let (head, size) = {
        let mut chain = session.chain(url).lock_owned().await;
        chain.of_table(state.metadata().id());
        if !chain.may_read(state.version(), partition) {
            return KeptRead::Latest;
        }
        match (chain.head, chain.head_size) {
            (Some(head), Some(size)) => (head, size),
            _ => return KeptRead::Latest,
        }
    };
    use object_store::ObjectStoreExt;
    let file = object_store::path::Path::from(format!("_delta_log/{head:020}.json"));
    match kept.log_store().object_store(None).head(&file).await {
        Ok(meta) if meta.size == size => KeptRead::AsIs,
        // Gone, another commit there, or the store could not say.
        _ => KeptRead::Afresh,
    }
}

/// How a run reads the target this process keeps ([`may_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeptRead {
    /// As it is.
    AsIs,
    /// Brought up to date.
    Latest,
    /// Loaded afresh: the table there may not be the one kept.
    Afresh,
}

/// Commits the `written` files to the target at `url`, replacing the files of
/// `period` in `target` (the version the run read): a replace-where overwrite
/// whose predicate is `predicate`, with `properties` (txn and commit info; given the
/// operation metrics). Returns the version of the commit.
///
/// Commits of one process are made one at a time. When every commit since `target`'s
/// version is this process's own, for other partitions ([`Chain::next_after`]), or the
/// process knows of none ([`Chain::commit_at`]), the commit is written at the next
/// version straight away, put-if-absent: nothing it read has changed, so there is
/// nothing to check, and delta-rs does not read the commit back. Otherwise, or when
/// another writer took that version meanwhile, delta-rs's commit loop checks the
/// commits in between for conflicts and retries. Checkpoints are written after the process's next commit may start; with
/// `checkpoint_in_background`, by a task of their own (see
/// [`Session::checkpoints_written`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit(
    session: &Session,
    url: &Url,
    options: &StorageOptions,
    target: &DeltaTable,
    partitioning: &Partitioning,
    period: PartitionDate,
    partition: &str,
    written: Written,
    predicate: &Expr,
    properties: impl FnOnce(serde_json::Value) -> CommitProperties,
    checkpoint_in_background: bool,
) -> Result<u64> {
    let delta = |source: DeltaTableError| Error::Delta {
        action: "writing target",
        table: url.clone(),
        source,
    };
    let failed = |source: DeltaTableError| write_error(url, partition, source);
    let state = target.snapshot().map_err(delta)?;
    let read = state.version();
    let removes = partition_files(target, url, partitioning, period).await?;
    let metrics = serde_json::json!({
        "num_added_files": written.adds.len(),
        "num_added_rows": written.rows,
        "num_removed_files": removes.len(),
    });
    let actions: Vec<Action> = written
        .adds
        .into_iter()
        .map(Action::Add)
        .chain(
            removes
                .iter()
                .map(|f| Action::Remove(f.remove_action(true))),
        )
        .collect();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(
            partitioning
                .columns()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
        predicate: Some(fmt_expr_to_sql(predicate).map_err(delta)?),
    };
    let log_store = target.log_store();
    // Checkpoints come after the lock (below), not in delta-rs's post-commit step.
    let prepared = CommitBuilder::from(properties(metrics).with_create_checkpoint(false))
        .with_actions(actions)
        .build(
            Some(state as &dyn TableReference),
            log_store.clone(),
            operation,
        )
        .into_prepared_commit_future()
        .await
        .map_err(failed)?;

    // The commit file's size, for `may_read`: the same bytes whichever version they
    // land at.
    let size = match prepared.commit_or_bytes() {
        CommitOrBytes::LogBytes(bytes) => Some(bytes.len() as u64),
        CommitOrBytes::TmpCommit(_) => None,
    };
    let chain = session.chain(url);
    let mut chain = chain.lock().await;
    chain.of_table(state.metadata().id());
    if let Some(version) = chain.commit_at(read, partition) {
        let entry = prepared.commit_or_bytes().clone();
        match log_store
            .write_commit_entry(version, entry, uuid::Uuid::new_v4())
            .await
        {
            Ok(()) => {
                chain.committed(version, partition, size);
                drop(chain);
                tracing::debug!(table = %url, version, "target: committed after this process's own commits");
                checkpoint(
                    session,
                    url,
                    options,
                    target,
                    version,
                    checkpoint_in_background,
                )
                .await;
                return Ok(version);
            }
            // Another process took the version: the commit loop below checks its
            // commit for conflicts, and the runs after read it.
            Err(TransactionError::VersionAlreadyExists(_)) => chain.found_taken(version),
            Err(e) => return Err(failed(e.into())),
        }
    }
    let post_commit = prepared.await.map_err(failed)?;
    let finalized = post_commit.await.map_err(failed)?;
    chain.committed(finalized.version, partition, size);
    drop(chain);
    let mut table = target.clone();
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

/// A checkpoint written in a task of its own.
pub(crate) struct Pending {
    pub(crate) task: tokio::task::JoinHandle<()>,
    /// Whether the target is to be loaded from the checkpoint once it is written;
    /// cleared by [`Session::checkpoints_written`], whose caller has no more runs to
    /// make.
    pub(crate) reload: Arc<AtomicBool>,
}

/// Writes the checkpoint of `version` when the target's checkpoint interval (as of
/// `table`, which may be older) says so ([`write_checkpoint_at`]), here or,
/// `in_background`, in a task of its own that [`Session::checkpoints_written`] waits
/// for.
async fn checkpoint(
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
    table.snapshot().is_ok_and(|state| {
        (version + 1).is_multiple_of(state.table_config().checkpoint_interval().get())
    })
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
    if let Err(e) = write_checkpoint(table, version).await {
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

/// Writes the checkpoint of `version` of the target `table` belongs to, as delta-rs's
/// `create_checkpoint` does, but without a table loaded at that version: the kernel
/// reads the log for it anyway.
async fn write_checkpoint(table: &DeltaTable, version: u64) -> deltalake::DeltaResult<()> {
    let log_store = table.log_store();
    let root = log_store.transaction_url(None)?;
    let engine = log_store.engine(None);
    let snapshot = tokio::task::spawn_blocking({
        let engine = engine.clone();
        move || {
            delta_kernel::Snapshot::builder_for(root)
                .at_version(version)
                .build(engine.as_ref())
        }
    })
    .await
    .map_err(|e| DeltaTableError::Generic(e.to_string()))??;
    snapshot.checkpoint(engine.as_ref(), None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Chain;

    fn chain(commits: &[(u64, &str)]) -> Chain {
        let mut chain = Chain::default();
        for (version, partition) in commits {
            chain.committed(*version, partition, None);
        }
        chain
    }

    #[test]
    fn a_run_commits_next_after_its_own_process_commits_of_other_partitions() {
        let chain = chain(&[(4, "d=1"), (5, "d=2"), (6, "d=3")]);
        assert_eq!(chain.next_after(6, "d=4"), Some(7));
        assert_eq!(chain.next_after(4, "d=4"), Some(7));
    }

    #[test]
    fn a_commit_of_its_own_partition_since_the_run_read_goes_through_the_check() {
        let chain = chain(&[(4, "d=1"), (5, "d=2")]);
        assert_eq!(chain.next_after(4, "d=2"), None);
        // Before the run read: not a change it missed.
        assert_eq!(chain.next_after(5, "d=2"), Some(6));
    }

    #[test]
    fn another_writers_commit_since_the_run_read_goes_through_the_check() {
        // Version 5 is not this process's.
        let chain = chain(&[(4, "d=1"), (6, "d=2")]);
        assert_eq!(chain.next_after(4, "d=3"), None);
        assert_eq!(chain.next_after(5, "d=3"), Some(7));
        // A run that read a version newer than this process's last commit.
        assert_eq!(chain.next_after(7, "d=3"), None);
        // Nothing committed yet by this process.
        assert_eq!(Chain::default().next_after(0, "d=1"), None);
    }

    #[test]
    fn a_run_after_no_commit_it_knows_of_commits_at_the_next_version() {
        // A process that has committed nothing, or nothing since the run read.
        assert_eq!(Chain::default().commit_at(0, "d=1"), Some(1));
        let chain = chain(&[(4, "d=1")]);
        assert_eq!(chain.commit_at(7, "d=3"), Some(8));
        // Its own commits since: after them, as `next_after` says.
        assert_eq!(chain.commit_at(3, "d=3"), Some(5));
        // Its own commit of the run's partition since: through the check.
        assert_eq!(chain.commit_at(3, "d=1"), None);
        // Another writer took a version after the one the run read.
        let mut chain = Chain::default();
        chain.found_taken(5);
        assert_eq!(chain.commit_at(4, "d=1"), None);
        assert_eq!(chain.commit_at(5, "d=1"), Some(6));
    }

    #[test]
    fn a_run_reads_a_version_a_few_own_commits_of_other_partitions_old() {
        let commits: Vec<(u64, String)> = (1..=super::UNREAD_OWN_COMMITS + 1)
            .map(|v| (v, format!("d={v}")))
            .collect();
        let commits: Vec<(u64, &str)> = commits.iter().map(|(v, p)| (*v, p.as_str())).collect();
        let chain = chain(&commits);
        let head = super::UNREAD_OWN_COMMITS + 1;
        assert!(chain.may_read(head, "d=new"));
        assert!(chain.may_read(1, "d=new"));
        // Too many commits unread: brought up to date.
        assert!(!chain.may_read(0, "d=new"));
        // A commit of the run's own partition unread.
        assert!(!chain.may_read(1, "d=3"));
        // Another writer's commit, or none by this process.
        assert!(!chain.may_read(head + 1, "d=new"));
        assert!(!Chain::default().may_read(0, "d=new"));
    }

    #[test]
    fn a_version_found_taken_by_another_writer_must_be_read() {
        let mut chain = chain(&[(4, "d=1"), (5, "d=2")]);
        assert!(chain.may_read(4, "d=3"));
        chain.found_taken(6);
        assert!(!chain.may_read(4, "d=3"));
        assert!(!chain.may_read(5, "d=3"));
        // The commit after it, made by delta-rs's commit loop, read it.
        chain.committed(7, "d=3", None);
        assert!(chain.may_read(7, "d=1"));
        assert!(!chain.may_read(5, "d=1"));
    }

    #[test]
    fn the_chain_of_another_table_at_the_location_starts_afresh() {
        let mut chain = chain(&[(4, "d=1"), (5, "d=2")]);
        chain.of_table("a");
        assert_eq!(
            chain.head, None,
            "the commits of an unknown table are forgotten"
        );
        chain.committed(6, "d=1", Some(100));
        chain.of_table("a");
        assert_eq!((chain.head, chain.head_size), (Some(6), Some(100)));
        chain.of_table("b");
        assert_eq!(chain.next_after(6, "d=2"), None);
        assert!(!chain.may_read(6, "d=2"));
    }

    #[test]
    fn the_chain_forgets_its_oldest_commits() {
        let mut chain = Chain::default();
        for v in 0..(super::CHAIN_MEMORY as u64 + 10) {
            chain.committed(v, "d", None);
        }
        assert_eq!(chain.ours.len(), super::CHAIN_MEMORY);
        // A run that read a version whose successors are forgotten is checked.
        assert_eq!(chain.next_after(0, "e"), None);
        assert_eq!(
            chain.next_after(20, "e"),
            Some(super::CHAIN_MEMORY as u64 + 10)
        );
    }
}
