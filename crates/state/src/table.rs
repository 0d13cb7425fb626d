//! The state table: reads, and transitions committed as compare-and-swap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, Remove};
use deltalake::logstore::LogStore;
use deltalake::operations::write::configs::WriterStatsConfig;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use latefill_core::storage::{
    KeptTable, StorageOptions, finish_new_table, open_table, prepare_new_table, table_builder,
};
use latefill_core::{PartitionKey, Partitioning, TableVersion};
use object_store::ObjectStoreExt;
use rand::RngExt;
use url::Url;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::model::{self, AllRows, FormatError, PartitionState, Rows, Status};

/// How long a claim holds unless told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::minutes(10);

/// Commits between checkpoints of the state table (applied when it is created).
const STATE_CHECKPOINT_INTERVAL: u64 = 10;

/// Commits between two vacuums of the state table's replaced files.
const VACUUM_INTERVAL: u64 = 100;

/// How long the state table keeps old commits and replaced files by default: a week,
/// Delta's own default for files. latefill reads only the latest version, so this
/// serves people inspecting the table's history.
pub const DEFAULT_RETENTION: StdDuration = StdDuration::from_secs(7 * 24 * 3600);

/// How old a file the state table's log never named must be before it is vacuumed:
/// far longer than a writer takes between writing its file and committing it.
const ORPHAN_MIN_AGE: Duration = Duration::hours(1);

/// How many times a read of the state table is tried before its error is reported.
const MAX_READ_ATTEMPTS: usize = 5;

/// How many times a vacuum that raced a transition is tried.
const VACUUM_ATTEMPTS: usize = 5;

/// How recently a kept snapshot must have been read or written for a transition to
/// decide on it without first asking the store for newer commits. A stale one costs
/// a commit attempt that fails; it can never win one.
const RECENT: StdDuration = StdDuration::from_secs(2);

/// How long a transition that lost the race for a version waits before reading
/// again: a random time up to `2^attempt` (at most 16) times what the lost attempt
/// took ("full jitter"). Scaled by the attempt's own time, the contenders spread out
/// over as many commit cycles as the store needs: about a millisecond on a local
/// disk, four requests on an object store (a listing, the new commits, the data
/// file, the commit). Scaled by a fixed millisecond, as before, workers on a store
/// answering in 50 ms all came back within one cycle, and 16 of them lost 63% of
/// their commits (`scripts/fleet.sh`).
fn backoff(attempt: usize, lost: StdDuration) -> StdDuration {
    let cycle = lost.clamp(StdDuration::from_millis(1), StdDuration::from_secs(2));
    let spread = cycle * 2u32.pow(attempt.min(4) as u32);
    spread.mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// How many times a transition re-reads and retries before giving up.
const MAX_ATTEMPTS: usize = 200;

/// The state table of one pipeline.
///
/// Every transition reads the table at some version N, decides on what it read, and
/// commits at exactly N+1 (a Delta commit with no conflict resolution). When another
/// writer took N+1 first, it reads again and decides again, after a jittered backoff.
/// Because the decision is remade on fresh data, two runs can never both claim a
/// partition, across processes and across hosts that share the storage.
///
/// A handle (and its clones) keeps the last version it read or wrote, and brings it up
/// to date from the commits after it rather than reading the table again: on object
/// storage a read from scratch costs a dozen requests, an update one listing when
/// nothing changed. The snapshot only saves reads: every decision is still made on
/// the latest version and committed at exactly the next one.
#[derive(Debug, Clone)]
pub struct StateTable {
    url: Url,
    pipeline: String,
    partitioning: Partitioning,
    clock: Arc<dyn Clock>,
    owner: String,
    lease: Duration,
    retention: StdDuration,
    storage: StorageOptions,
    snapshot: Arc<std::sync::Mutex<Option<Snapshot>>>,
    /// This handle's last commit, when the snapshot kept is not brought to it yet
    /// ([`StateTable::commit`]): whatever reads the snapshot next does that first.
    ///
    /// A plain mutex, held only to put or take: a caller that took the commit and
    /// stopped being polled (a claim in flight beside a backfill's partitions) must not
    /// hold up another call on the handle, which then reads as if it were not there.
    pending: Arc<std::sync::Mutex<Option<Pending>>>,
    /// When this handle last found no table there (and kept no snapshot since): a
    /// first transition within [`RECENT`] creates it without looking again.
    absent_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Held by the task writing this handle's latest checkpoint, so that they land in
    /// order.
    checkpoints: Arc<tokio::sync::Mutex<()>>,
    /// The version of the checkpoint this handle wrote one commit early
    /// ([`StateTable::checkpoint_after`]).
    early_checkpoint: Arc<std::sync::Mutex<Option<u64>>>,
}

/// A commit this handle put, that its snapshot is still to be brought to.
struct Pending {
    /// The table the commit was based on.
    base: DeltaTable,
    /// The commit's version.
    version: u64,
    /// The rows it wrote.
    batch: RecordBatch,
    /// The file it wrote them to: the table's only data file at `version`.
    adds: Vec<Add>,
    /// When it landed.
    confirmed_at: std::time::Instant,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The table at the version this handle last read or wrote, with its rows.
#[derive(Clone)]
struct Snapshot {
    table: KeptTable,
    all: AllRows,
    /// The data files the rows were read from.
    files: Vec<deltalake::Path>,
    /// When this was last known to be the latest version (read or written).
    confirmed_at: std::time::Instant,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.table.table().version())
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The state table as read at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The table version read; `None` when the table does not exist yet.
    pub version: Option<TableVersion>,
    /// One row per partition (a map looked up by key or by name).
    pub partitions: BTreeMap<PartitionKey, PartitionState>,
    /// The pipeline's rows that name none of its partitions: written under another
    /// partitioning of the pipeline (its column, granularity or format changed
    /// since). Nothing plans them; they are kept as they are.
    pub unrecognised: Vec<String>,
    /// The detector's cursor (JSON), if one was saved.
    pub cursor: Option<String>,
}

/// What a run records of a partition it processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The partition.
    pub partition: PartitionKey,
    /// The source version it was processed at.
    pub source_version: TableVersion,
    /// The fingerprint of its source files at that version.
    pub fingerprint: Option<String>,
    /// The version of the transform that processed it.
    pub transform: Option<String>,
    /// What the run records of itself, as JSON ([`PartitionState::detail`]).
    pub detail: Option<String>,
}

/// A partition a plan picked, with the row it was planned from (`None`: it had no row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The partition.
    pub partition: PartitionKey,
    /// Its row when the plan was made.
    pub seen: Option<PartitionState>,
}

/// Transitions of one run committed together by [`StateTable::commit_batch`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Partitions processed, to record as such.
    pub complete: Vec<Completion>,
    /// Partitions claimed and not started, given back: their rows return to what the
    /// plan saw, as if never claimed.
    pub release: Vec<Planned>,
    /// Partitions to claim, each only if its row is still the one planned from and no
    /// other run's lease holds it.
    pub claim: Vec<Planned>,
    /// At most how many of `claim` to claim, in order: one that cannot be claimed is
    /// refused and the next is tried, and those after the last claimed are left as
    /// they are ([`BatchOutcome::unreached`]). `None`: all of them. A run that lists
    /// more partitions than it claims fills its batch with free ones, however many
    /// of those it planned other workers took meanwhile.
    pub claim_at_most: Option<usize>,
    /// Partitions this run holds whose leases start anew.
    pub renew: Vec<PartitionKey>,
    /// The detector's cursor to save with them.
    pub cursor: Option<String>,
}

impl Batch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.complete.is_empty()
            && self.release.is_empty()
            && self.claim.is_empty()
            && self.renew.is_empty()
            && self.cursor.is_none()
    }
}

/// What [`StateTable::commit_batch`] did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The partitions recorded as processed.
    pub completed: Vec<PartitionKey>,
    /// The partitions now claimed by the run.
    pub claimed: Vec<PartitionKey>,
    /// Why the others were not: [`Error::Claimed`] or [`Error::ChangedSincePlanned`]
    /// for a claim, [`Error::LeaseLost`] for a completion.
    pub refused: Vec<Error>,
    /// The partitions of [`Batch::claim`] neither claimed nor refused: the batch had
    /// claimed [`Batch::claim_at_most`] before them.
    pub unreached: Vec<PartitionKey>,
}

/// This process, as `host:pid`.
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

impl StateTable {
    /// `pipeline`'s rows of the state table at `url` (created on the first
    /// transition), with the system clock, this process as owner and
    /// [`DEFAULT_LEASE`].
    ///
    /// Several pipelines may share one state table: each reads and changes only its
    /// own rows (partitions, claims and cursor), and they meet only in the
    /// compare-and-swap of its commits.
    pub fn new(url: Url, pipeline: impl Into<String>, partitioning: Partitioning) -> Self {
        StateTable {
            url,
            pipeline: pipeline.into(),
            partitioning,
            clock: Arc::new(SystemClock),
            owner: default_owner(),
            lease: DEFAULT_LEASE,
            retention: DEFAULT_RETENTION,
            storage: StorageOptions::new(),
            snapshot: Arc::default(),
            pending: Arc::default(),
            absent_at: Arc::default(),
            checkpoints: Arc::default(),
            early_checkpoint: Arc::default(),
        }
    }

    /// Opens the table with these store options over the environment's
    /// ([`latefill_core::storage`]).
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// How long old commits and replaced files are kept (a week by default).
    ///
    /// Every transition rewrites the table, so it gains a commit and replaces a file
    /// each time. Each process that commits a checkpoint (every 10 commits) then
    /// removes the commits older than this from before that checkpoint, and one that
    /// commits a multiple of 100 vacuums files the log removed longer ago than this,
    /// and files of writers that lost a race once they are an hour old (never a file a
    /// concurrent writer is committing). Only the
    /// latest version is ever read, so any retention is safe for latefill; a reader
    /// whose file is vacuumed under it simply reads again.
    pub fn with_retention(mut self, retention: StdDuration) -> Self {
        self.retention = retention;
        self
    }

    /// Uses `clock` for leases and timestamps.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long claims hold.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Who claims, recorded in `owner`.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// How long a claim holds.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The table's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The pipeline whose rows this handle reads and changes.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// How the pipeline's partitions are named, which reads its rows.
    pub fn partitioning(&self) -> &Partitioning {
        &self.partitioning
    }

    /// The clock in use.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn delta(&self, action: &'static str) -> impl Fn(DeltaTableError) -> Error + '_ {
        move |source| Error::Delta {
            action,
            table: self.url.clone(),
            source,
        }
    }

    /// Reads the table's latest version.
    pub async fn read(&self) -> Result<StateSnapshot> {
        let (table, all) = self.load().await?;
        Ok(snapshot(table.and_then(|t| t.version()), all))
    }

    /// The version this handle read or wrote within the last 2 seconds, or no table if
    /// it found none that recently, without asking the store for newer commits; else
    /// [`StateTable::read`]. For decisions whose commits are compare-and-swaps of their
    /// own (a plan whose claims check the rows they were planned from): a commit made
    /// since can make them fail, never wrong.
    pub async fn read_recent(&self) -> Result<StateSnapshot> {
        // This handle's own last commit is recent by itself: its rows are known, and
        // need no listing to bring delta-rs's snapshot to it.
        let own = self
            .pending
            .lock()
            .expect("not poisoned")
            .as_ref()
            .filter(|p| p.confirmed_at.elapsed() < RECENT)
            .map(|p| (p.version, p.batch.clone()));
        if let Some((version, batch)) = own
            && let Ok(all) = model::from_batches(&[batch], &self.pipeline, &self.partitioning)
        {
            return Ok(snapshot(Some(version), all));
        }
        self.settle().await;
        // Or no table, when this handle found none as recently.
        match self.recent_or_absent() {
            Some((table, all)) => Ok(snapshot(table.and_then(|t| t.version()), all)),
            None => self.read().await,
        }
    }

    /// The row of `partition` as of the version this handle read within the last 2
    /// seconds, without asking the store: `Some(None)` when that version has none (or
    /// no table was found that recently), `None` when the handle knows nothing that
    /// recent or has a commit of its own still to take in. A hint, for work that a
    /// stale answer only wastes (reading a partition's files ahead of its run).
    pub fn recent_row(&self, partition: &PartitionKey) -> Option<Option<PartitionState>> {
        if self.pending.lock().expect("not poisoned").is_some() {
            return None;
        }
        // Looked up where it is kept: the whole snapshot is not copied for one row.
        if let Some(kept) = self
            .snapshot
            .lock()
            .expect("not poisoned")
            .as_ref()
            .filter(|k| k.confirmed_at.elapsed() < RECENT)
        {
            return Some(kept.all.mine.partitions.get(partition).cloned());
        }
        self.absent_at
            .lock()
            .expect("not poisoned")
            .filter(|at| at.elapsed() < RECENT)
            .map(|_| None)
    }

    async fn load(&self) -> Result<(Option<DeltaTable>, AllRows)> {
        self.settle().await;
        let mut attempt = 1;
        loop {
            match self.try_load().await {
                // A read races log cleanup and vacuum, which remove a checkpoint, commit
                // or file that the read chose once newer ones exist: read again. A
                // damaged table fails the same way each time and is reported.
                Err(Error::Delta { .. }) if attempt < MAX_READ_ATTEMPTS => {
                    attempt += 1;
                    self.forget();
                    let pause = rand::rng().random_range(5..=50);
                    tokio::time::sleep(StdDuration::from_millis(pause)).await;
                }
                Err(Error::Delta { source, .. }) => return Err(self.diagnose(source).await),
                other => return other,
            }
        }
    }

    /// [`Error::DamagedLog`] when the table's log is damaged, else the read's error.
    async fn diagnose(&self, source: DeltaTableError) -> Error {
        match latefill_detector::log_damage(&self.url, &self.storage).await {
            Some(damage) => Error::DamagedLog {
                table: self.url.clone(),
                source: damage,
            },
            None => self.delta("reading state table")(source),
        }
    }

    /// The latest version: this handle's snapshot brought up to date, or the table read
    /// afresh when there is none or it cannot be advanced (log cleanup removed the
    /// commits after it, the table was deleted or created again).
    async fn try_load(&self) -> Result<(Option<DeltaTable>, AllRows)> {
        let kept = self.snapshot.lock().expect("not poisoned").clone();
        if let Some(mut kept) = kept {
            match kept.table.advance(None).await {
                Ok(true) => {
                    let table = kept.table.table().clone();
                    let files = self.data_files(&table).await?;
                    let all = if files == kept.files {
                        kept.all
                    } else {
                        self.read_rows(&table, &files).await?
                    };
                    self.keep(kept.table, &all, files);
                    return Ok((Some(table), all));
                }
                // A newer checkpoint, or the commit kept is gone or another (the
                // table was deleted, maybe created again): read afresh (see
                // `KeptTable`), and never decide on the snapshot kept again.
                Ok(false) => self.forget(),
                Err(e) => {
                    tracing::debug!(table = %self.url, error = %e, "state table: reading afresh");
                    self.forget();
                }
            }
        }
        let asked = std::time::Instant::now();
        let absent = || {
            *self.absent_at.lock().expect("not poisoned") = Some(asked);
            Ok((None, AllRows::default()))
        };
        if latefill_core::storage::is_local_without_log(&self.url) {
            return absent();
        }
        let table = match open_table(&self.url, &self.storage).await {
            Ok(t) => t,
            Err(DeltaTableError::NotATable(_)) => return absent(),
            Err(e) => return Err(self.delta("opening state table")(e)),
        };
        let files = self.data_files(&table).await?;
        let all = self.read_rows(&table, &files).await?;
        self.keep(KeptTable::loaded(table.clone()), &all, files);
        Ok((Some(table), all))
    }

    /// Keeps `table` and its rows as this handle's snapshot.
    fn keep(&self, table: KeptTable, all: &AllRows, files: Vec<deltalake::Path>) {
        *self.absent_at.lock().expect("not poisoned") = None;
        *self.snapshot.lock().expect("not poisoned") = Some(Snapshot {
            table,
            all: all.clone(),
            files,
            confirmed_at: std::time::Instant::now(),
        });
    }

    /// What a transition's first attempt may decide on without asking the store: the
    /// kept snapshot, if it was confirmed the latest within [`RECENT`], or no table,
    /// if none was found within it (its commit then creates the table, and fails if
    /// another writer created it meanwhile).
    fn recent_or_absent(&self) -> Option<(Option<DeltaTable>, AllRows)> {
        if let Some(kept) = self.recent() {
            return Some((Some(kept.table.table().clone()), kept.all));
        }
        self.absent_at
            .lock()
            .expect("not poisoned")
            .filter(|at| at.elapsed() < RECENT)
            .map(|_| (None, AllRows::default()))
    }

    /// The kept snapshot, if it was confirmed the latest within [`RECENT`].
    fn recent(&self) -> Option<Snapshot> {
        let kept = self.snapshot.lock().expect("not poisoned");
        kept.as_ref()
            .filter(|k| k.confirmed_at.elapsed() < RECENT)
            .cloned()
    }

    fn forget(&self) {
        *self.snapshot.lock().expect("not poisoned") = None;
        *self.absent_at.lock().expect("not poisoned") = None;
    }

    /// Brings the snapshot this handle keeps to the version it last committed, if it
    /// is not there yet (see [`StateTable::commit`]).
    async fn settle(&self) {
        let pending = self.pending.lock().expect("not poisoned").take();
        if let Some(p) = pending {
            match advanced(p.base, p.version).await {
                Some(table) => self.adopt(&table, p.batch, p.confirmed_at).await,
                None => self.forget(),
            }
        }
    }

    /// The paths of the table's data files at its loaded version (from the log, in
    /// memory).
    async fn data_files(&self, table: &DeltaTable) -> Result<Vec<deltalake::Path>> {
        let files: Vec<_> = latefill_core::storage::active_files(table)
            .await
            .map_err(self.delta("listing state table files"))?;
        let mut paths: Vec<deltalake::Path> = files.iter().map(|f| f.object_store_path()).collect();
        paths.sort();
        Ok(paths)
    }

    /// Reads every row of `files`.
    async fn read_rows(&self, table: &DeltaTable, files: &[deltalake::Path]) -> Result<AllRows> {
        let store = table.log_store().object_store(None);
        let mut batches = Vec::new();
        for file in files {
            let bytes = store
                .get(file)
                .await
                .map_err(|e| self.delta("reading state table")(e.into()))?
                .bytes()
                .await
                .map_err(|e| self.delta("reading state table")(e.into()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| self.delta("reading state table")(e.into()))?;
            for batch in reader {
                batches.push(batch.map_err(|e| self.delta("reading state table")(e.into()))?);
            }
        }
        model::from_batches(&batches, &self.pipeline, &self.partitioning)
            .map_err(|e| self.format_error(e))
    }

    fn format_error(&self, e: FormatError) -> Error {
        match e {
            FormatError::NoPipelineColumn => Error::NoPipelineColumn {
                table: self.url.clone(),
            },
            FormatError::Malformed(reason) => Error::Malformed {
                table: self.url.clone(),
                reason,
            },
        }
    }

    /// Commits `rows` as the table's whole content at exactly the version after
    /// `base`'s. `Ok(false)` when another writer committed first.
    async fn commit(&self, base: Option<DeltaTable>, rows: &AllRows) -> Result<bool> {
        let next_version = base.as_ref().and_then(|t| t.version()).map_or(0, |v| v + 1);
        let table = match base {
            Some(t) => t,
            None => {
                if let Ok(path) = self.url.to_file_path() {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| self.delta("creating state table")(e.into()))?;
                }
                // An unloaded handle: the write must create version 0 or fail. Loading
                // here would base the commit on a table this decision never read.
                let table = table_builder(&self.url, &self.storage)
                    .and_then(|b| b.build())
                    .map_err(self.delta("creating state table"))?;
                prepare_new_table(&table, &self.url, "state").await?;
                table
            }
        };
        let interval = STATE_CHECKPOINT_INTERVAL.to_string();
        let batch = model::to_batch(&self.pipeline, rows).map_err(|e| self.format_error(e))?;
        let written = match overwrite(&table, &batch, commit_properties()).await {
            Some(put) => put.map(|(version, adds)| Written::Put(version, adds)),
            None => table
                .clone()
                .write(vec![batch.clone()])
                // Every transition opens the table: a checkpoint every few commits keeps
                // the JSON it replays short (delta-rs checkpoints every 100 by default).
                .with_configuration([("delta.checkpointInterval", Some(interval.as_str()))])
                .with_save_mode(SaveMode::Overwrite)
                .with_commit_properties(commit_properties())
                .await
                .map(Written::Loaded),
        };
        let written = match written {
            Ok(written) => written,
            Err(e) if is_conflict(&e) => return Ok(false),
            Err(e) => return Err(self.delta("writing state table")(e)),
        };
        // The commit landed: this handle's latest version is the one just written.
        let confirmed_at = std::time::Instant::now();
        match written {
            Written::Loaded(table) => {
                if next_version == 0 {
                    finish_new_table(&table, &self.url);
                }
                self.adopt(&table, batch, confirmed_at).await;
                self.upkeep(&table, next_version).await;
            }
            Written::Put(version, adds) => {
                self.landed(table, version, batch, adds, confirmed_at).await
            }
        }
        Ok(true)
    }

    /// After this handle put the commit of `version` (`batch` in the file `adds`)
    /// after `base`'s version and its own commits since.
    async fn landed(
        &self,
        base: DeltaTable,
        version: u64,
        batch: RecordBatch,
        adds: Vec<Add>,
        confirmed_at: std::time::Instant,
    ) {
        // Bringing delta-rs's snapshot to the version just written is a listing of
        // the log (on an object store, a request that the caller would wait for): it
        // is left to this handle's next read, if any; its next transition puts its
        // commit after this one without it (see `transition`). A vacuum, every
        // VACUUM_INTERVAL commits, starts from it.
        if version.is_multiple_of(VACUUM_INTERVAL) {
            // After the checkpoint before it and its log cleanup, which would remove
            // commits under the vacuum's read.
            let _in_order = self.checkpoints.clone().lock_owned().await;
            match advanced(base, version).await {
                Some(advanced) => {
                    self.adopt(&advanced, batch, confirmed_at).await;
                    self.upkeep(&advanced, version).await;
                }
                // The commits between `base` and this one are gone (log cleanup after
                // a checkpoint since `base`): the vacuum starts from the table read
                // afresh.
                None => {
                    self.forget();
                    if let Ok((Some(latest), _)) = self.load().await {
                        self.upkeep(&latest, version).await;
                    }
                }
            }
            return;
        }
        if self.checkpoint_after(version, &batch) {
            self.checkpoint_in_background(&base, version);
        }
        *self.pending.lock().expect("not poisoned") = Some(Pending {
            base,
            version,
            batch,
            adds,
            confirmed_at,
        });
    }

    /// The first attempt of a transition on this handle's own last commit, made within
    /// [`RECENT`]: decides on the rows it wrote and puts the next commit after it,
    /// replacing its file, without asking the store anything first. delta-rs's snapshot
    /// is not brought to that commit (a listing): the commit is built on the one before
    /// this handle's commits, whose protocol and metadata they did not change.
    ///
    /// `None` when there is no such commit, or `decide` refuses or changes nothing
    /// (decided again on a fresh read), or another writer took the next version.
    async fn after_own_commit<T>(
        &self,
        decide: &mut impl FnMut(&mut Rows, DateTime<Utc>) -> Result<T>,
    ) -> Result<Option<T>> {
        let Some(own) = self
            .pending
            .lock()
            .expect("not poisoned")
            .take_if(|p| p.confirmed_at.elapsed() < RECENT)
        else {
            return Ok(None);
        };
        let put_back = |own: Pending| {
            let mut pending = self.pending.lock().expect("not poisoned");
            // A commit of a call beside this one is newer.
            if pending.as_ref().is_none_or(|p| p.version < own.version) {
                *pending = Some(own);
            }
        };
        let Ok(all) = model::from_batches(
            std::slice::from_ref(&own.batch),
            &self.pipeline,
            &self.partitioning,
        ) else {
            put_back(own);
            return Ok(None);
        };
        let mut next = all.clone();
        let out = match decide(&mut next.mine, self.clock.now()) {
            Ok(out) if next.mine != all.mine => out,
            _ => {
                put_back(own);
                return Ok(None);
            }
        };
        let batch = match model::to_batch(&self.pipeline, &next) {
            Ok(batch) => batch,
            Err(e) => {
                put_back(own);
                return Err(self.format_error(e));
            }
        };
        let replaced = async { Ok(own.adds.iter().map(removal).collect()) };
        let put = overwrite_at(
            &own.base,
            replaced,
            own.version + 1,
            &batch,
            commit_properties(),
        )
        .await;
        match put {
            Some(Ok((version, adds))) => {
                let confirmed_at = std::time::Instant::now();
                self.landed(own.base, version, batch, adds, confirmed_at)
                    .await;
                Ok(Some(out))
            }
            Some(Err(e)) if is_conflict(&e) => {
                put_back(own);
                Ok(None)
            }
            Some(Err(e)) => {
                put_back(own);
                Err(self.delta("writing state table")(e))
            }
            None => {
                put_back(own);
                Ok(None)
            }
        }
    }

    /// Keeps `table`, which this handle just committed `batch` at, as its snapshot:
    /// what was written is the latest version this handle knows, as a read would
    /// return it (timestamps in microseconds, say).
    async fn adopt(
        &self,
        table: &DeltaTable,
        batch: RecordBatch,
        confirmed_at: std::time::Instant,
    ) {
        let written = model::from_batches(&[batch], &self.pipeline, &self.partitioning).ok();
        let kept = written.zip(self.data_files(table).await.ok());
        *self.absent_at.lock().expect("not poisoned") = None;
        let mut snapshot = self.snapshot.lock().expect("not poisoned");
        // A call beside this one may have kept a newer version meanwhile.
        if snapshot.as_ref().and_then(|k| k.table.table().version()) > table.version() {
            return;
        }
        *snapshot = kept.map(|(all, files)| Snapshot {
            table: match &*snapshot {
                // The write advanced the table kept.
                Some(kept) => kept.table.advanced_to(table.clone()),
                None => KeptTable::loaded(table.clone()),
            },
            all,
            files,
            confirmed_at,
        });
    }

    /// Whether the commit of `version`, of the rows `batch`, is followed by a
    /// checkpoint: every tenth commit, as delta-rs writes them (versions 9, 19, ...),
    /// or one commit early when a partition is being processed. A run's claim and its
    /// completion are two commits one after the other; a process's last commit, the
    /// completion, would land on the checkpoint's version half the time, and the
    /// process would end waiting for the checkpoint's five to seven requests. Written
    /// at the claim, it goes on while the partition runs, and the completion, one
    /// commit after a checkpoint this handle wrote, writes none.
    fn checkpoint_after(&self, version: u64, batch: &RecordBatch) -> bool {
        let mut early = self.early_checkpoint.lock().expect("not poisoned");
        if (version + 2).is_multiple_of(STATE_CHECKPOINT_INTERVAL) {
            let processing = model::from_batches(
                std::slice::from_ref(batch),
                &self.pipeline,
                &self.partitioning,
            )
            .is_ok_and(|all| {
                all.mine
                    .partitions
                    .values()
                    .any(|p| p.status == Status::Processing)
            });
            if processing {
                *early = Some(version);
            }
            return processing;
        }
        (version + 1).is_multiple_of(STATE_CHECKPOINT_INTERVAL) && *early != version.checked_sub(1)
    }

    /// The checkpoint of `version` (every tenth commit, as delta-rs writes them:
    /// versions 9, 19, ...), then the removal of the commits before it older than the
    /// retention, in a task of its own ([`latefill_core::background`]): the caller's
    /// next transition or run does not wait for its five to seven requests. The
    /// checkpoints of one handle are written in order. Best effort: the transition has
    /// landed, and readers replay the commits since the checkpoint before.
    fn checkpoint_in_background(&self, table: &DeltaTable, version: u64) {
        let log_store = table.log_store();
        let url = self.url.clone();
        let cutoff_ms = self.cleanup_cutoff_ms();
        let in_order = self.checkpoints.clone();
        latefill_core::background::spawn(async move {
            let _in_order = in_order.lock().await;
            if let Err(e) =
                latefill_core::storage::write_checkpoint(log_store.as_ref(), version).await
            {
                tracing::warn!(table = %url, version, error = %e, "state table: could not write a checkpoint");
                return;
            }
            if let Err(e) = deltalake::checkpoints::cleanup_expired_logs_for(
                version,
                log_store.as_ref(),
                cutoff_ms,
                None,
            )
            .await
            {
                tracing::warn!(table = %url, version, error = %e, "state table: log cleanup failed");
            }
        });
    }

    /// Commits and files replaced before this time (in milliseconds) are past the
    /// retention.
    fn cleanup_cutoff_ms(&self) -> i64 {
        let retention = Duration::from_std(self.retention).unwrap_or(Duration::MAX);
        let cutoff = self.clock.now().checked_sub_signed(retention);
        cutoff.map_or(i64::MIN, |t| t.timestamp_millis())
    }

    /// After the commit of `version`, every [`VACUUM_INTERVAL`] commits: removes the
    /// files replaced longer ago than the retention. Best effort: the transition has
    /// landed, and the next vacuum tries again. (A commit of delta-rs's write has its
    /// checkpoint written by delta-rs; its log cleanup waits for the next checkpoint.)
    async fn upkeep(&self, table: &DeltaTable, version: u64) {
        if version == 0 {
            return;
        }
        let retention = Duration::from_std(self.retention).unwrap_or(Duration::MAX);
        if version.is_multiple_of(VACUUM_INTERVAL) {
            use deltalake::operations::vacuum::VacuumMode;
            // Lite: files the log removed (replaced states), after the retention. Full:
            // also files the log never named, i.e. those of writers that lost the
            // compare-and-swap race; only after ORPHAN_MIN_AGE, since a file that a
            // concurrent writer is committing right now is not in this snapshot either.
            let orphan_age = retention.max(ORPHAN_MIN_AGE);
            //
            // Vacuum commits too (VACUUM START before deleting anything), and that
            // commit conflicts with any transition another writer lands meanwhile:
            // then it is tried again on the latest version.
            for (mode, retention) in [
                (VacuumMode::Lite, retention),
                (VacuumMode::Full, orphan_age),
            ] {
                let mut base = table.clone();
                for attempt in 1..=VACUUM_ATTEMPTS {
                    let vacuum = base
                        .clone()
                        .vacuum()
                        .with_retention_period(retention)
                        .with_enforce_retention_duration(false)
                        .with_mode(mode.clone())
                        .with_clock(Arc::new(VacuumClock(self.clock.clone())))
                        .await;
                    match vacuum {
                        Ok(_) => break,
                        Err(e) if attempt < VACUUM_ATTEMPTS && is_conflict(&e) => {
                            tracing::debug!(table = %self.url, version, attempt, "state table: vacuum raced a transition; again");
                            match self.load().await {
                                Ok((Some(latest), _)) => base = latest,
                                _ => break,
                            }
                        }
                        Err(e) => {
                            tracing::warn!(table = %self.url, version, error = %e, "state table: vacuum failed");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Reads, applies `decide` to this pipeline's rows and commits the whole table at
    /// the next version, retrying on fresh data when another writer got there first.
    /// `decide` sees the rows and the time; an error from it ends the transition with
    /// nothing written. Other pipelines' rows are written back as they were read.
    pub(crate) async fn transition<T>(
        &self,
        mut decide: impl FnMut(&mut Rows, DateTime<Utc>) -> Result<T>,
    ) -> Result<T> {
        if let Some(out) = self.after_own_commit(&mut decide).await? {
            return Ok(out);
        }
        self.settle().await;
        for attempt in 0..MAX_ATTEMPTS {
            let started = std::time::Instant::now();
            // A first attempt decides on the snapshot this handle read or wrote moments
            // ago, without asking the store whether it is still the latest (on object
            // storage, a listing and a read): its commit at the next version fails if it
            // is not. Only a commit ends such an attempt; a decision to refuse or to
            // change nothing is made again on a fresh read.
            let recent = if attempt == 0 {
                self.recent_or_absent()
            } else {
                None
            };
            let optimistic = recent.is_some();
            let (table, all) = match recent {
                Some(recent) => recent,
                None => self.load().await?,
            };
            let mut next = all.clone();
            let out = match decide(&mut next.mine, self.clock.now()) {
                Ok(out) => out,
                Err(_) if optimistic => continue,
                Err(e) => return Err(e),
            };
            if next.mine == all.mine {
                if optimistic {
                    continue;
                }
                return Ok(out);
            }
            let base = table.as_ref().and_then(|t| t.version());
            if self.commit(table, &next).await? {
                return Ok(out);
            }
            if optimistic {
                continue;
            }
            tracing::debug!(
                table = %self.url,
                base = ?base,
                attempt,
                "another writer committed first; reading again"
            );
            tokio::time::sleep(backoff(attempt, started.elapsed())).await;
        }
        Err(Error::Contention {
            table: self.url.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Claims `partitions` for `run_id`, all or none: it fails, writing nothing, if an
    /// unexpired lease of another run holds any of them. An expired lease (its owner
    /// crashed) is taken over.
    pub async fn claim(&self, partitions: &[PartitionKey], run_id: &str) -> Result<()> {
        self.claim_planned(partitions, run_id, None).await
    }

    /// Claims `partition` for `run_id`, as [`StateTable::claim`] does, and returns its
    /// row as the claim found it (`None`: it had none). The row is the one the claim's
    /// compare-and-swap replaced: no read is needed for it, and it cannot be older than
    /// the claim (another run may have completed the partition just before).
    pub async fn claim_one(
        &self,
        partition: &PartitionKey,
        run_id: &str,
    ) -> Result<Option<PartitionState>> {
        let previous = self
            .transition(|rows, now| {
                Self::claimable(rows, partition, run_id, None, now)?;
                let previous = rows.partitions.get(partition).cloned();
                self.put_claim(rows, partition, run_id, now);
                Ok(previous)
            })
            .await?;
        tracing::info!(table = %self.url, %partition, run_id, "claimed");
        Ok(previous)
    }

    /// Claims one partition only if its row is still `seen` (the row a plan was made
    /// from; `None`: no row), checked in the same compare-and-swap as the claim. Two
    /// runs that planned from the same state can therefore never both process it.
    pub async fn claim_if_unchanged(
        &self,
        partition: &PartitionKey,
        run_id: &str,
        seen: Option<&PartitionState>,
    ) -> Result<()> {
        let partitions = [partition.clone()];
        self.claim_planned(&partitions, run_id, Some(&[seen])).await
    }

    async fn claim_planned(
        &self,
        partitions: &[PartitionKey],
        run_id: &str,
        seen: Option<&[Option<&PartitionState>]>,
    ) -> Result<()> {
        self.transition(|rows, now| {
            for (i, name) in partitions.iter().enumerate() {
                let seen = seen.map(|s| s.get(i).copied().flatten());
                Self::claimable(rows, name, run_id, seen, now)?;
            }
            for name in partitions {
                self.put_claim(rows, name, run_id, now);
            }
            Ok(())
        })
        .await?;
        tracing::info!(table = %self.url, ?partitions, run_id, "claimed");
        Ok(())
    }

    /// Whether `run_id` may claim `name`: no unexpired lease of another run holds it
    /// and, for a planned claim (`seen` is `Some`), its row is still the one the plan
    /// was made from.
    fn claimable(
        rows: &Rows,
        name: &PartitionKey,
        run_id: &str,
        seen: Option<Option<&PartitionState>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let current = rows.partitions.get(name);
        if let Some(seen) = seen {
            // Our own claim, re-read after a retried commit, is not a change.
            let ours = current.is_some_and(|c| c.run_id == run_id && c.is_leased(now));
            if current != seen && !ours {
                return Err(Error::ChangedSincePlanned {
                    partition: name.clone(),
                });
            }
        }
        if let Some(p) = current
            && p.is_leased(now)
            && p.run_id != run_id
        {
            return Err(held_by(p));
        }
        Ok(())
    }

    /// Writes `run_id`'s claim of `name` into `rows`, with a fresh lease.
    fn put_claim(&self, rows: &mut Rows, name: &PartitionKey, run_id: &str, now: DateTime<Utc>) {
        let previous = rows.partitions.get(name);
        if let Some(p) = previous.filter(|p| p.status == Status::Processing && p.run_id != run_id) {
            tracing::warn!(
                partition = %name,
                owner = %p.owner,
                run_id = %p.run_id,
                "taking over a claim whose lease expired (its run died or stalled)"
            );
        }
        // A renewal of our own claim is not another attempt.
        let renewal =
            previous.is_some_and(|p| p.status == Status::Processing && p.run_id == run_id);
        let state = PartitionState {
            partition: name.clone(),
            status: Status::Processing,
            source_version: previous.and_then(|p| p.source_version),
            fingerprint: previous.and_then(|p| p.fingerprint.clone()),
            transform: previous.and_then(|p| p.transform.clone()),
            run_id: run_id.to_owned(),
            owner: self.owner.clone(),
            lease_expires_at: Some(now + self.lease),
            attempts: previous.map_or(0, |p| p.attempts) + u64::from(!renewal),
            last_error: previous.and_then(|p| p.last_error.clone()),
            detail: previous.and_then(|p| p.detail.clone()),
            updated_at: now,
        };
        rows.partitions.insert(name.clone(), state);
    }

    /// Records `done` in `rows`, if `run_id` still holds it.
    fn put_completion(
        rows: &mut Rows,
        done: &Completion,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // Already recorded (a retry after a commit that landed): nothing to do.
        if let Some(p) = rows.partitions.get(&done.partition)
            && p.status == Status::Processed
            && p.run_id == run_id
            && p.source_version == Some(done.source_version)
        {
            return Ok(());
        }
        let p = Self::held(rows, &done.partition, run_id)?;
        p.detail = carry_history(p, done);
        p.status = Status::Processed;
        p.source_version = Some(done.source_version);
        p.fingerprint.clone_from(&done.fingerprint);
        p.transform.clone_from(&done.transform);
        p.lease_expires_at = None;
        p.last_error = None;
        p.updated_at = now;
        Ok(())
    }

    /// Commits several transitions of one run at once: completes `batch.complete`,
    /// gives back `batch.release` as planned, and claims `batch.claim`, each
    /// partition on its own terms, in one compare-and-swap commit. A partition that
    /// cannot be claimed or completed is reported in the outcome and does not stop
    /// the others; a commit lost to another writer is decided again on fresh rows, as
    /// every transition is.
    ///
    /// A batch is what lets a backfill make one state commit per batch of
    /// partitions instead of two per partition.
    pub async fn commit_batch(&self, run_id: &str, batch: &Batch) -> Result<BatchOutcome> {
        let outcome = self
            .transition(|rows, now| {
                let mut outcome = BatchOutcome::default();
                if let Some(cursor) = &batch.cursor {
                    rows.cursor = Some(cursor.clone());
                }
                for done in &batch.complete {
                    match Self::put_completion(rows, done, run_id, now) {
                        Ok(()) => outcome.completed.push(done.partition.clone()),
                        Err(e) => outcome.refused.push(e),
                    }
                }
                for planned in &batch.release {
                    match rows.partitions.get(&planned.partition) {
                        Some(p) if p.status == Status::Processing && p.run_id == run_id => {
                            match &planned.seen {
                                Some(seen) => {
                                    rows.partitions
                                        .insert(planned.partition.clone(), seen.clone());
                                }
                                None => {
                                    rows.partitions.remove(&planned.partition);
                                }
                            }
                        }
                        // No longer ours (its lease expired and was taken over).
                        _ => {}
                    }
                }
                for name in &batch.renew {
                    match Self::held(rows, name, run_id) {
                        Ok(_) => {
                            self.put_claim(rows, name, run_id, now);
                            outcome.claimed.push(name.clone());
                        }
                        Err(e) => outcome.refused.push(e),
                    }
                }
                let most = batch.claim_at_most.unwrap_or(usize::MAX);
                let mut taken = 0;
                for planned in &batch.claim {
                    if taken >= most {
                        outcome.unreached.push(planned.partition.clone());
                        continue;
                    }
                    let seen = Some(planned.seen.as_ref());
                    match Self::claimable(rows, &planned.partition, run_id, seen, now) {
                        Ok(()) => {
                            self.put_claim(rows, &planned.partition, run_id, now);
                            outcome.claimed.push(planned.partition.clone());
                            taken += 1;
                        }
                        Err(e) => outcome.refused.push(e),
                    }
                }
                Ok(outcome)
            })
            .await?;
        tracing::info!(
            table = %self.url,
            run_id,
            completed = outcome.completed.len(),
            released = batch.release.len(),
            claimed = ?outcome.claimed,
            refused = outcome.refused.len(),
            "batch committed"
        );
        Ok(outcome)
    }

    fn held<'a>(
        rows: &'a mut Rows,
        partition: &PartitionKey,
        run_id: &str,
    ) -> Result<&'a mut PartitionState> {
        match rows.partitions.get_mut(partition) {
            Some(p) if p.status == Status::Processing && p.run_id == run_id => Ok(p),
            other => Err(Error::LeaseLost {
                partition: partition.clone(),
                run_id: run_id.to_owned(),
                holder: other
                    .filter(|p| p.status == Status::Processing)
                    .map_or("nobody".into(), |p| {
                        format!("{} (run {})", p.owner, p.run_id)
                    }),
            }),
        }
    }

    /// Records that `run_id` processed `partition` at `source_version`, its source
    /// files' `fingerprint` and the `transform` version that processed it.
    pub async fn complete(
        &self,
        partition: &PartitionKey,
        run_id: &str,
        source_version: TableVersion,
        fingerprint: Option<String>,
        transform: Option<String>,
    ) -> Result<()> {
        let done = Completion {
            partition: partition.clone(),
            source_version,
            fingerprint,
            transform,
            detail: None,
        };
        self.complete_with_cursor(&done, run_id, None).await
    }

    /// Records `done` as [`StateTable::complete`] does, saving the detector's `cursor`
    /// in the same commit when there is one: a run's completion and its detection, one
    /// commit.
    pub async fn complete_with_cursor(
        &self,
        done: &Completion,
        run_id: &str,
        cursor: Option<String>,
    ) -> Result<()> {
        self.transition(|rows, now| {
            if let Some(cursor) = &cursor {
                rows.cursor = Some(cursor.clone());
            }
            Self::put_completion(rows, done, run_id, now)
        })
        .await
    }

    /// Records that `run_id` failed to process `partition`.
    pub async fn fail(&self, partition: &PartitionKey, run_id: &str, error: &str) -> Result<()> {
        self.transition(|rows, now| {
            let p = Self::held(rows, partition, run_id)?;
            p.status = Status::Failed;
            p.lease_expires_at = None;
            p.last_error = Some(error.to_owned());
            p.updated_at = now;
            Ok(())
        })
        .await
    }

    /// Gives up a claim without a result (an interrupted run): the partition is marked
    /// failed with `reason` and can be claimed at once by any run.
    pub async fn release(
        &self,
        partition: &PartitionKey,
        run_id: &str,
        reason: &str,
    ) -> Result<()> {
        self.fail(partition, run_id, reason).await
    }

    /// Gives back the claim on `partition` whatever run holds it, for a person
    /// repairing by hand (`latefill state release`): the row becomes `failed` with
    /// `reason` and can be claimed at once. A live lease is refused
    /// ([`Error::Claimed`]) unless `force`: its owner may still be working. Returns
    /// the row as it was.
    pub async fn release_claim(
        &self,
        partition: &PartitionKey,
        force: bool,
        reason: &str,
    ) -> Result<PartitionState> {
        let table = self.url.clone();
        let pipeline = self.pipeline.clone();
        self.transition(|rows, now| {
            let row = rows
                .partitions
                .get_mut(partition)
                .ok_or_else(|| Error::NoSuchPartition {
                    table: table.clone(),
                    pipeline: pipeline.clone(),
                    partition: partition.clone(),
                })?;
            if row.status != Status::Processing {
                return Err(Error::NotClaimed {
                    partition: partition.clone(),
                    status: row.status.to_string(),
                });
            }
            if row.is_leased(now) && !force {
                return Err(held_by(row));
            }
            let before = row.clone();
            row.status = Status::Failed;
            row.lease_expires_at = None;
            row.last_error = Some(reason.to_owned());
            row.updated_at = now;
            Ok(before)
        })
        .await
    }

    /// Forgets `partition` (`latefill state reset`): its row is removed, so the next
    /// run treats it as never processed. A live lease is refused ([`Error::Claimed`])
    /// unless `force`. Returns the row removed.
    pub async fn reset(&self, partition: &PartitionKey, force: bool) -> Result<PartitionState> {
        let table = self.url.clone();
        let pipeline = self.pipeline.clone();
        self.transition(|rows, now| match rows.partitions.get(partition) {
            None => Err(Error::NoSuchPartition {
                table: table.clone(),
                pipeline: pipeline.clone(),
                partition: partition.clone(),
            }),
            Some(row) if row.is_leased(now) && !force => Err(held_by(row)),
            Some(_) => Ok(rows.partitions.remove(partition).expect("present")),
        })
        .await
    }

    /// Saves the detector's cursor.
    pub async fn save_cursor(&self, cursor: String) -> Result<()> {
        self.transition(|rows, _| {
            rows.cursor = Some(cursor.clone());
            Ok(())
        })
        .await
    }

    /// Forgets the source version of every row, keeping fingerprints: the source was
    /// replaced, so versions recorded against the old table say nothing about the new
    /// one, and only the files can tell whether a partition is up to date. Returns how
    /// many rows had a version.
    pub async fn forget_source_versions(&self) -> Result<usize> {
        self.transition(|rows, now| {
            let mut forgotten = 0;
            for p in rows.partitions.values_mut() {
                if p.source_version.take().is_some() {
                    p.updated_at = now;
                    forgotten += 1;
                }
            }
            Ok(forgotten)
        })
        .await
    }

    /// Records partitions as processed at the given source versions (with the
    /// transform version, when known), keeping rows that are newer; used by
    /// `state rebuild`.
    pub async fn restore(
        &self,
        processed: &BTreeMap<PartitionKey, (TableVersion, Option<String>)>,
    ) -> Result<usize> {
        let owner = self.owner.clone();
        self.transition(|rows, now| {
            let mut restored = 0;
            for (name, (version, transform)) in processed {
                let version = *version;
                let keep = rows
                    .partitions
                    .get(name)
                    .is_some_and(|p| p.source_version.is_some_and(|v| v >= version));
                if keep {
                    continue;
                }
                rows.partitions.insert(
                    name.clone(),
                    PartitionState {
                        partition: name.clone(),
                        status: Status::Processed,
                        source_version: Some(version),
                        fingerprint: None,
                        transform: transform.clone(),
                        run_id: "rebuild".into(),
                        owner: owner.clone(),
                        lease_expires_at: None,
                        attempts: 0,
                        last_error: None,
                        detail: None,
                        updated_at: now,
                    },
                );
                restored += 1;
            }
            Ok(restored)
        })
        .await
    }
}

/// What `all` holds for the pipeline, read at `version`.
fn snapshot(version: Option<u64>, all: AllRows) -> StateSnapshot {
    StateSnapshot {
        version: version.map(TableVersion::new),
        partitions: all.mine.partitions,
        unrecognised: all.unrecognised,
        cursor: all.mine.cursor,
    }
}

/// [`Error::Claimed`] for `row`, held by a live lease.
fn held_by(row: &PartitionState) -> Error {
    Error::Claimed {
        partition: row.partition.clone(),
        owner: row.owner.clone(),
        run_id: row.run_id.clone(),
        lease_expires_at: row
            .lease_expires_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
    }
}

/// Replaces every row of the state table `table` (loaded) with `batch` in one commit at
/// the version after `table`'s, as delta-rs's `write` in overwrite mode does, without
/// planning a DataFusion write for one small file: the file is written by delta-rs's
/// `DeltaWriter`, and the commit removes every file of `table` and adds it. `None`
/// when `table` is not loaded (the write creates the table) or `batch` is not of its
/// schema: then delta-rs's `write` does it, casting what needs casting.
async fn overwrite(
    table: &DeltaTable,
    batch: &RecordBatch,
    properties: CommitProperties,
) -> Option<std::result::Result<(u64, Vec<Add>), DeltaTableError>> {
    let version = table.version()? + 1;
    let replaced = async {
        let files: Vec<_> = latefill_core::storage::active_files(table).await?;
        Ok(files.iter().map(|f| f.remove_action(true)).collect())
    };
    overwrite_at(table, replaced, version, batch, properties).await
}

/// [`overwrite`] of `table` at `version`, whose data files are then `replaced`
/// (every commit since `table`'s version is this handle's own, and metadata-free).
async fn overwrite_at(
    table: &DeltaTable,
    replaced: impl std::future::Future<Output = std::result::Result<Vec<Remove>, DeltaTableError>>,
    version: u64,
    batch: &RecordBatch,
    properties: CommitProperties,
) -> Option<std::result::Result<(u64, Vec<Add>), DeltaTableError>> {
    let state = table.snapshot().ok()?;
    let schema = state.snapshot().arrow_schema();
    let batch = match RecordBatch::try_new(schema.clone(), batch.columns().to_vec()) {
        Ok(batch) => batch,
        Err(e) => {
            tracing::debug!(table = %table.table_url(), error = %e, "state table: rows not of the table's schema; written by delta-rs's write");
            return None;
        }
    };
    Some(
        async {
            let stats = WriterStatsConfig::from_config(state.snapshot().table_configuration());
            let config = WriterConfig::new(
                schema,
                Vec::new(),
                None,
                None,
                None,
                stats.num_indexed_cols,
                stats.stats_columns,
            );
            let mut writer = DeltaWriter::new(table.log_store().object_store(None), config);
            writer.write(&batch).await?;
            let adds = writer.close().await?;
            let actions: Vec<Action> = adds
                .iter()
                .cloned()
                .map(Action::Add)
                .chain(replaced.await?.into_iter().map(Action::Remove))
                .collect();
            let operation = DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: None,
                predicate: None,
            };
            // The commit file is put at the next version, put-if-absent: a version
            // another writer took fails it (a conflict, read again). delta-rs's commit
            // would list the log first to fail earlier; the put tells the same.
            let log_store = table.log_store();
            let prepared = CommitBuilder::from(properties)
                .with_actions(actions)
                .build(Some(state), log_store.clone(), operation)
                .into_prepared_commit_future()
                .await?;
            log_store
                .write_commit_entry(
                    version,
                    prepared.commit_or_bytes().clone(),
                    uuid::Uuid::new_v4(),
                )
                .await?;
            Ok((version, adds))
        }
        .await,
    )
}

/// How the state table's commits are made: one attempt (a lost race is decided again
/// on fresh rows, by `transition`), and no log cleanup after each (delta-rs would list
/// the whole log to look for expired commits; the checkpoint task does it).
fn commit_properties() -> CommitProperties {
    CommitProperties::default()
        .with_max_retries(0)
        .with_cleanup_expired_logs(Some(false))
}

/// What replaces `add`, a data file this handle wrote, in its next commit.
fn removal(add: &Add) -> Remove {
    Remove {
        path: add.path.clone(),
        data_change: true,
        deletion_timestamp: Some(Utc::now().timestamp_millis()),
        extended_file_metadata: Some(true),
        partition_values: Some(add.partition_values.clone()),
        size: Some(add.size),
        tags: None,
        deletion_vector: add.deletion_vector.clone(),
        base_row_id: None,
        default_row_commit_version: None,
    }
}

/// How a commit of the state table was written.
enum Written {
    /// By delta-rs's `write`, which returns the table at the new version.
    Loaded(DeltaTable),
    /// By [`overwrite`], at this version, with this data file: the table it was based
    /// on is not brought to it.
    Put(u64, Vec<Add>),
}

/// `table` brought to `version`, which this process just committed (a listing of the
/// log from its version); `None` when it cannot be, and the next read loads the table
/// afresh.
async fn advanced(mut table: DeltaTable, version: u64) -> Option<DeltaTable> {
    match table.update_incremental(Some(version)).await {
        Ok(()) => Some(table),
        Err(e) => {
            tracing::debug!(table = %table.table_url(), version, error = %e, "state table: could not bring the snapshot to its own commit");
            None
        }
    }
}

/// Errors after which re-reading and deciding again is right: another writer moved
/// the table (or was moving it while the log was listed).
fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::InvalidVersion(_)
            | DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::CommitConflict(_)
            }
    )
}

/// delta-rs's vacuum clock, driven by the state table's.
#[derive(Debug)]
struct VacuumClock(Arc<dyn Clock>);

impl deltalake::operations::vacuum::Clock for VacuumClock {
    fn current_timestamp_millis(&self) -> i64 {
        self.0.now().timestamp_millis()
    }
}

/// How many late changes a row keeps, the latest.
const LATE_CHANGES_KEPT: usize = 50;

/// The detail a completion records: the run's own (`done.detail`), with the
/// partition's history carried over from the row's, so that a lateness report can
/// tell a late change from a first load, and still count late changes after log
/// cleanup removed their commits:
/// - `first_processed_version`: the source version the partition was first
///   processed at, set by its first completion and kept by every later one (a row
///   processed before latefill recorded it stays without);
/// - `late_changes`: the last change (`{version, committed_at}`) of each run that
///   reprocessed the partition because its data changed after the version it was
///   processed at before; the run hands it in as `last_change`.
fn carry_history(row: &PartitionState, done: &Completion) -> Option<String> {
    let parse = |d: Option<&str>| {
        d.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter(serde_json::Value::is_object)
    };
    let before = parse(row.detail.as_deref()).unwrap_or_default();
    let Some(mut detail) = parse(done.detail.as_deref()) else {
        return done.detail.clone();
    };
    let first = match row.source_version {
        None => Some(done.source_version.get()),
        Some(_) => before["first_processed_version"].as_u64(),
    };
    if let Some(first) = first {
        detail["first_processed_version"] = first.into();
    }
    let mut late: Vec<serde_json::Value> = before["late_changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = detail
        .as_object_mut()
        .and_then(|d| d.remove("last_change"))
        .unwrap_or_default();
    if let (Some(previous), Some(version)) = (row.source_version, last["version"].as_u64())
        && version > previous.get()
        && late.last().and_then(|l| l["version"].as_u64()) != Some(version)
    {
        late.push(last);
    }
    if !late.is_empty() {
        let skip = late.len().saturating_sub(LATE_CHANGES_KEPT);
        detail["late_changes"] = late.split_off(skip).into();
    }
    Some(detail.to_string())
}
