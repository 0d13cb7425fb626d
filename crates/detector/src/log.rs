//! Reading a Delta log: listing it, commits (JSON lines) and checkpoints (Parquet).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, MapArray, RecordBatch, StructArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::logstore::LogStore;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::{ObjectStore, ObjectStoreError, Path};

use futures::{StreamExt, TryStreamExt};
use latefill_core::TableVersion;
use latefill_core::storage::{StorageOptions, table_builder};
use object_store::ObjectStoreExt;
use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};
use crate::naming::MetadataAction;

/// How many log files are fetched at once.
const CONCURRENT_READS: usize = 32;

/// Partition values as the log writes them: key -> value (`None` is null).
pub(crate) type PartitionValues = HashMap<String, Option<String>>;

/// An `add` or `remove` action, reduced to what change detection needs.
#[derive(Debug, Clone)]
pub(crate) struct FileAction {
    pub is_add: bool,
    pub path: String,
    pub partition_values: Option<PartitionValues>,
    pub data_change: bool,
}

/// One commit's actions that matter here.
#[derive(Debug, Default)]
pub(crate) struct Commit {
    pub files: Vec<FileAction>,
    pub metadata: Option<MetadataAction>,
    /// A digest of the commit file's bytes: commit files are never rewritten, so a
    /// different digest for the same version means a different table. Empty where
    /// the reader was not asked for it (all but the last commit of a long read).
    pub digest: String,
    /// When the commit was made, in milliseconds since the epoch: its
    /// `commitInfo.inCommitTimestamp` where the table has in-commit timestamps, else
    /// `commitInfo.timestamp` (every writer latefill knows writes one).
    pub timestamp: Option<i64>,
}

/// A checkpoint's live files and metadata.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    pub files: Vec<(String, PartitionValues)>,
    pub metadata: Option<MetadataAction>,
}

/// What a listing of `_delta_log` found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub commits: BTreeSet<u64>,
    /// Checkpoint version -> its part files (one for a classic checkpoint).
    pub checkpoints: BTreeMap<u64, Vec<Path>>,
}

impl Listing {
    pub fn latest(&self) -> Option<u64> {
        let c = self.commits.last().copied();
        let k = self.checkpoints.keys().last().copied();
        c.max(k)
    }

    /// The first version of the run of contiguous commits that ends at the latest
    /// version (`latest + 1` when the latest is a checkpoint without its commit).
    pub fn contiguous_from(&self) -> u64 {
        let Some(latest) = self.latest() else {
            return 0;
        };
        if !self.commits.contains(&latest) {
            return latest + 1;
        }
        let mut first = latest;
        while first > 0 && self.commits.contains(&(first - 1)) {
            first -= 1;
        }
        first
    }

    /// The oldest version whose state the log can still rebuild: 0 while commit 0
    /// exists, else the oldest checkpoint from which commits run on unbroken to the
    /// latest. `None` when no such checkpoint exists (a damaged log).
    pub fn oldest_readable(&self) -> Option<u64> {
        let first = self.contiguous_from();
        if first == 0 {
            return Some(0);
        }
        self.checkpoints.range(first - 1..).next().map(|(&v, _)| v)
    }
}

/// FNV-1a over bytes, as hex: a cheap identity for files that are never rewritten.
pub(crate) fn digest(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[derive(Deserialize)]
struct LineJson {
    add: Option<FileJson>,
    remove: Option<FileJson>,
    #[serde(rename = "metaData")]
    meta_data: Option<MetadataAction>,
    #[serde(rename = "commitInfo")]
    commit_info: Option<CommitInfoJson>,
}

#[derive(Deserialize)]
struct CommitInfoJson {
    timestamp: Option<i64>,
    #[serde(rename = "inCommitTimestamp")]
    in_commit_timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct FileJson {
    path: String,
    #[serde(rename = "partitionValues")]
    partition_values: Option<PartitionValues>,
    // Missing means "changed": the conservative reading.
    #[serde(rename = "dataChange", default = "yes")]
    data_change: bool,
}

fn yes() -> bool {
    true
}

/// Reads one table's `_delta_log` through its object store, or, for a table on the
/// local file system, straight from its directory: object_store's local store hands
/// every read to a blocking thread and stats each file twice, which made a cold scan of
/// 20,000 small commits cost more in thread wake-ups than in reading.
#[derive(Debug, Clone)]
pub(crate) struct LogReader {
    table: Url,
    options: StorageOptions,
    store: Arc<dyn ObjectStore>,
    /// `_delta_log` on the local file system, for `file://` tables.
    local_log: Option<Arc<std::path::Path>>,
}

fn commit_path(version: u64) -> Path {
    Path::from(format!("_delta_log/{version:020}.json"))
}

impl LogReader {
    pub fn open(table: &Url, options: &StorageOptions) -> Result<Self> {
        let delta = |source| Error::Delta {
            table: table.clone(),
            source,
        };
        let log_store = table_builder(table, options)
            .map_err(delta)?
            .build_storage()
            .map_err(delta)?;
        let local_log = (table.scheme() == "file")
            .then(|| table.to_file_path().ok())
            .flatten()
            .map(|root| Arc::from(root.join("_delta_log")));
        Ok(LogReader {
            table: table.clone(),
            options: options.clone(),
            store: log_store.object_store(None),
            local_log,
        })
    }

    pub fn table(&self) -> &Url {
        &self.table
    }

    pub fn storage_options(&self) -> &StorageOptions {
        &self.options
    }

    fn storage(&self, source: ObjectStoreError) -> Error {
        Error::Storage {
            table: self.table.clone(),
            source,
        }
    }

    fn local_error(&self, path: &std::path::Path, source: std::io::Error) -> Error {
        self.storage(ObjectStoreError::Generic {
            store: "LocalFileSystem",
            source: format!("{}: {source}", path.display()).into(),
        })
    }

    /// The names of the files in `_delta_log` (not its subdirectories).
    async fn log_file_names(&self) -> Result<Vec<String>> {
        if let Some(dir) = &self.local_log {
            // Names only: a directory read, no stat per entry.
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.local_error(dir, e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| self.local_error(dir, e))?;
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
            return Ok(names);
        }
        let prefix = Path::from("_delta_log");
        let mut names = Vec::new();
        let mut entries = self.store.list(Some(&prefix));
        while let Some(meta) = entries.next().await {
            let meta = meta.map_err(|e| self.storage(e))?;
            // Only the log's own files, not those of a subdirectory (_delta_log/_commits).
            if meta.location.prefix_match(&prefix).map(Iterator::count) == Some(1)
                && let Some(name) = meta.location.filename()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Lists the commits and checkpoints in `_delta_log`.
    pub async fn list(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        for name in self.log_file_names().await? {
            let Some((digits, rest)) = name.split_once('.') else {
                continue;
            };
            if digits.len() != 20 {
                continue;
            }
            let Ok(version) = digits.parse::<u64>() else {
                continue;
            };
            if rest == "json" {
                listing.commits.insert(version);
            } else if rest == "checkpoint.parquet"
                || (rest.starts_with("checkpoint.") && rest.ends_with(".parquet"))
            {
                listing
                    .checkpoints
                    .entry(version)
                    .or_default()
                    .push(Path::from(format!("_delta_log/{name}")));
            }
        }
        for parts in listing.checkpoints.values_mut() {
            parts.sort();
        }
        if listing.commits.is_empty() && listing.checkpoints.is_empty() {
            return Err(Error::NotATable {
                table: self.table.clone(),
                reason: "_delta_log holds no commit".into(),
            });
        }
        Ok(listing)
    }

    /// The bytes of one commit file; `None` when it does not exist.
    async fn commit_bytes(&self, version: u64) -> Result<Option<bytes::Bytes>> {
        if let Some(dir) = &self.local_log {
            // A commit is a few kilobytes: read in place, as a blocking thread's
            // hand-off would cost more than the read.
            return self.local_commit_bytes(dir, version);
        }
        match self.store.get(&commit_path(version)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| self.storage(e)),
            Err(ObjectStoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.storage(e)),
        }
    }

    fn local_commit_bytes(
        &self,
        dir: &std::path::Path,
        version: u64,
    ) -> Result<Option<bytes::Bytes>> {
        let path = dir.join(format!("{version:020}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.local_error(&path, e)),
        }
    }

    /// Reads one commit, with its digest; `None` when it does not exist.
    pub async fn read_commit(&self, version: u64) -> Result<Option<Commit>> {
        self.read_commit_with(version, true).await
    }

    /// Reads one commit; its digest only when asked (hashing every byte of a long
    /// history costs as much as a good part of parsing it).
    async fn read_commit_with(&self, version: u64, digest: bool) -> Result<Option<Commit>> {
        match self.commit_bytes(version).await? {
            Some(bytes) => self.parse_commit(version, &bytes, digest).map(Some),
            None => Ok(None),
        }
    }

    /// The [`digest`] of one commit file, without parsing it; `None` when it does not
    /// exist.
    pub async fn commit_digest(&self, version: u64) -> Result<Option<String>> {
        Ok(self.commit_bytes(version).await?.map(|b| digest(&b)))
    }

    fn parse_commit(&self, version: u64, bytes: &[u8], with_digest: bool) -> Result<Commit> {
        let mut commit = Commit {
            digest: if with_digest {
                digest(bytes)
            } else {
                String::new()
            },
            ..Commit::default()
        };
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed: LineJson =
                serde_json::from_slice(line).map_err(|e| Error::CorruptCommit {
                    table: self.table.clone(),
                    version,
                    line: i + 1,
                    reason: e.to_string(),
                })?;
            for (is_add, file) in [(true, parsed.add), (false, parsed.remove)] {
                if let Some(f) = file {
                    commit.files.push(FileAction {
                        is_add,
                        path: f.path,
                        partition_values: f.partition_values,
                        data_change: f.data_change,
                    });
                }
            }
            if parsed.meta_data.is_some() {
                commit.metadata = parsed.meta_data;
            }
            if let Some(info) = parsed.commit_info {
                commit.timestamp = info.in_commit_timestamp.or(info.timestamp);
            }
        }
        Ok(commit)
    }

    /// Reads commits that must exist, in version order, many at a time.
    pub async fn read_commits(
        &self,
        versions: impl IntoIterator<Item = u64>,
    ) -> Result<Vec<(u64, Commit)>> {
        let versions: Vec<u64> = versions.into_iter().collect();
        let later = versions.last().copied().unwrap_or_default();
        if self.local_log.is_some() {
            return self.read_local_commits(versions, later).await;
        }
        futures::stream::iter(versions)
            // Only the last commit's digest is kept (by the cursor).
            .map(|v| async move {
                match self.read_commit_with(v, v == later).await? {
                    Some(c) => Ok((v, c)),
                    None => Err(Error::MissingCommit {
                        table: self.table.clone(),
                        version: v,
                        later,
                    }),
                }
            })
            .buffered(CONCURRENT_READS)
            .try_collect()
            .await
    }

    /// [`Self::read_commits`] for a local table: the versions split into one run per
    /// core, each read and parsed on a blocking thread of its own.
    async fn read_local_commits(
        &self,
        versions: Vec<u64>,
        later: u64,
    ) -> Result<Vec<(u64, Commit)>> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Below a few hundred commits, one thread: a hand-off costs more than it saves.
        let per_thread = versions.len().div_ceil(threads).max(256);
        let runs: Vec<_> = versions
            .chunks(per_thread)
            .map(|run| {
                let (reader, run) = (self.clone(), run.to_vec());
                tokio::task::spawn_blocking(move || {
                    run.into_iter()
                        .map(|v| reader.read_local_commit(v, later))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(versions.len());
        for run in runs {
            out.extend(run.await.expect("a log reading thread panicked")?);
        }
        Ok(out)
    }

    fn read_local_commit(&self, version: u64, later: u64) -> Result<(u64, Commit)> {
        let dir = self.local_log.as_deref().expect("a local table");
        match self.local_commit_bytes(dir, version)? {
            Some(bytes) => Ok((
                version,
                self.parse_commit(version, &bytes, version == later)?,
            )),
            None => Err(Error::MissingCommit {
                table: self.table.clone(),
                version,
                later,
            }),
        }
    }

    /// Reads the commits after `version` without listing the log: probes
    /// `version+1, version+2, ...` a batch at a time until one does not exist. Its cost
    /// grows with the number of new commits, not with the log's length. The first
    /// batch is two (a daily run usually finds one new commit: one probe is wasted),
    /// each next one twice the last.
    ///
    /// With `latest`, a version the log was listed at moments ago, reads the commits up
    /// to it and probes for none after it: those are left for the next read. When one
    /// of them is missing, or `latest` is before `version`, probes as without it.
    pub async fn read_commits_after(
        &self,
        version: u64,
        latest: Option<u64>,
    ) -> Result<Vec<(u64, Commit)>> {
        if let Some(latest) = latest.filter(|&latest| latest >= version) {
            let found: Vec<Option<Commit>> = futures::stream::iter(version + 1..=latest)
                .map(|v| self.read_commit(v))
                .buffered(CONCURRENT_READS)
                .try_collect()
                .await?;
            if let Some(found) = found.into_iter().collect::<Option<Vec<Commit>>>() {
                return Ok((version + 1..=latest).zip(found).collect());
            }
        }
        let mut out = Vec::new();
        let mut next = version + 1;
        let mut batch = 2usize;
        loop {
            let found: Vec<Option<Commit>> = futures::stream::iter(next..next + batch as u64)
                .map(|v| self.read_commit(v))
                .buffered(batch)
                .try_collect()
                .await?;
            for commit in found {
                match commit {
                    Some(c) => {
                        out.push((next, c));
                        next += 1;
                    }
                    None => return Ok(out),
                }
            }
            batch = (batch * 2).min(CONCURRENT_READS);
        }
    }

    /// Reads a checkpoint's live files and metadata.
    pub async fn read_checkpoint(&self, version: u64, parts: &[Path]) -> Result<Checkpoint> {
        let corrupt = |reason: String| Error::CorruptCheckpoint {
            table: self.table.clone(),
            version,
            reason,
        };
        let mut checkpoint = Checkpoint::default();
        for part in parts {
            let bytes = self
                .store
                .get(part)
                .await
                .map_err(|e| self.storage(e))?
                .bytes()
                .await
                .map_err(|e| self.storage(e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(|e| corrupt(e.to_string()))?;
            let roots: Vec<usize> = builder
                .parquet_schema()
                .root_schema()
                .get_fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| matches!(f.name(), "add" | "metaData"))
                .map(|(i, _)| i)
                .collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            let reader = builder
                .with_projection(mask)
                .build()
                .map_err(|e| corrupt(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| corrupt(e.to_string()))?;
                read_checkpoint_batch(&batch, &mut checkpoint).map_err(corrupt)?;
            }
        }
        Ok(checkpoint)
    }
}

fn strings(array: &dyn Array) -> std::result::Result<Arc<dyn Array>, String> {
    cast(array, &DataType::Utf8).map_err(|e| e.to_string())
}

fn struct_field<'a>(
    s: &'a StructArray,
    name: &str,
) -> std::result::Result<&'a Arc<dyn Array>, String> {
    s.column_by_name(name)
        .ok_or_else(|| format!("column {name} is missing"))
}

fn map_row(map: &MapArray, row: usize) -> std::result::Result<PartitionValues, String> {
    let entries = map.value(row);
    let keys = strings(entries.column(0))?;
    let values = strings(entries.column(1))?;
    let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
    Ok((0..keys.len())
        .map(|i| {
            let v = values.is_valid(i).then(|| values.value(i).to_owned());
            (keys.value(i).to_owned(), v)
        })
        .collect())
}

fn read_checkpoint_batch(
    batch: &RecordBatch,
    out: &mut Checkpoint,
) -> std::result::Result<(), String> {
    if let Some(add) = batch.column_by_name("add") {
        let add = add.as_struct();
        let paths = strings(struct_field(add, "path")?)?;
        let paths = paths.as_string::<i32>();
        let values = struct_field(add, "partitionValues")?.as_map();
        for row in 0..add.len() {
            if add.is_valid(row) {
                let pv = if values.is_valid(row) {
                    map_row(values, row)?
                } else {
                    PartitionValues::new()
                };
                out.files.push((paths.value(row).to_owned(), pv));
            }
        }
    }
    if let Some(meta) = batch.column_by_name("metaData") {
        let meta = meta.as_struct();
        for row in 0..meta.len() {
            if !meta.is_valid(row) {
                continue;
            }
            let columns = struct_field(meta, "partitionColumns")?.as_list::<i32>();
            let columns = strings(columns.value(row).as_ref())?;
            let schema = strings(struct_field(meta, "schemaString")?)?;
            let configuration = match meta.column_by_name("configuration") {
                Some(c) if c.is_valid(row) => map_row(c.as_map(), row)?,
                _ => PartitionValues::new(),
            };
            let id = match meta.column_by_name("id") {
                Some(c) if c.is_valid(row) => {
                    Some(strings(c)?.as_string::<i32>().value(row).to_owned())
                }
                _ => None,
            };
            out.metadata = Some(MetadataAction {
                id,
                partition_columns: columns
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect(),
                schema_string: schema.as_string::<i32>().value(row).to_owned(),
                configuration,
            });
        }
    }
    Ok(())
}

/// The versions of a table that its log can still rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LogBounds {
    /// The oldest version whose state can be loaded: 0 while commit 0 exists, else the
    /// oldest checkpoint that log cleanup kept.
    pub oldest: TableVersion,
    /// The latest version.
    pub latest: TableVersion,
}

/// Lists `table`'s log and says which versions can still be loaded. Data files may
/// be gone (VACUUM) even where the log can be read.
pub async fn log_bounds(table: &Url, options: &StorageOptions) -> Result<LogBounds> {
    let reader = LogReader::open(table, options)?;
    let listing = reader.list().await?;
    let latest = listing.latest().expect("a listing holds a version");
    let oldest = listing
        .oldest_readable()
        .ok_or_else(|| Error::MissingCommit {
            table: table.clone(),
            version: listing.contiguous_from().saturating_sub(1),
            later: listing.contiguous_from(),
        })?;
    Ok(LogBounds {
        oldest: oldest.into(),
        latest: latest.into(),
    })
}

/// Reads what loading the table's latest version reads (its newest usable checkpoint
/// and every commit after it) and fails with the first damage found: a corrupt or
/// torn commit, an unreadable checkpoint, a missing commit. `Ok` when that part of
/// the log is sound, so that a load failure lies elsewhere (storage, data files).
pub async fn check_log(table: &Url, options: &StorageOptions) -> Result<()> {
    let reader = LogReader::open(table, options)?;
    let listing = reader.list().await?;
    let latest = listing.latest().expect("a listing holds a version");
    let first = listing.contiguous_from();
    let from = match listing
        .checkpoints
        .range(first.saturating_sub(1)..)
        .next_back()
    {
        Some((&version, parts)) => {
            reader.read_checkpoint(version, parts).await?;
            version + 1
        }
        None if first == 0 => 0,
        None => {
            return Err(Error::MissingCommit {
                table: table.clone(),
                version: first - 1,
                later: first,
            });
        }
    };
    reader.read_commits(from..=latest).await?;
    Ok(())
}

/// The damage [`check_log`] finds in the table's log (a corrupt or torn commit, an
/// unreadable checkpoint, a missing commit), if any: for a caller whose load of the
/// table failed and who wants to say why. `None` also when the log could not be read
/// at all (the caller's own error says more then).
pub async fn log_damage(table: &Url, options: &StorageOptions) -> Option<Error> {
    check_log(table, options)
        .await
        .err()
        .filter(Error::is_log_damage)
}
