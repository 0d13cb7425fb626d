//! Tables kept between calls and brought up to date with their new commits, instead
//! of replaying their logs from the last checkpoint each time ("load once, advance
//! incrementally").

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use deltalake::{DeltaResult, DeltaTableError};
use url::Url;

use super::{Coalesced, StorageOptions, table_builder};

/// How many commits a kept table is advanced by before looking for a newer checkpoint
/// to load it from afresh.
///
/// delta-rs advances a table by replaying the new commits onto the files it holds,
/// and keeps the file list in pieces, one more a commit, that every later commit and
/// write goes through again. Advanced for good, a target written by a year's backfill
/// took 5.5 ms a write at its first partitions and 35 ms at its last. Loading afresh
/// from a checkpoint starts again from one piece (3 to 5 ms on a local disk), so it is
/// worth doing once a newer checkpoint exists; looking for one is a read of
/// `_last_checkpoint`, once in this many commits.
pub const RELOAD_CHECK_EVERY: u64 = 20;

/// A loaded table kept to be brought up to date with the commits after its version,
/// which costs a listing and the new commits instead of the log from a checkpoint.
///
/// Once it has been advanced by [`RELOAD_CHECK_EVERY`] commits and the table has a
/// newer checkpoint, [`KeptTable::advance`] says to load it afresh instead.
#[derive(Clone)]
pub struct KeptTable {
    table: deltalake::DeltaTable,
    /// The version it was last loaded afresh at.
    loaded_at: u64,
    /// The version at which a checkpoint newer than `loaded_at` was last looked for.
    checked_at: u64,
    /// What its commit file at its version looked like when it was brought there:
    /// another file there means the table was deleted and created again under this
    /// process. `None` when not known (a table loaded at a checkpoint, whose commit
    /// file the load did not list), until the next advance lists it.
    stamp: Option<CommitStamp>,
    /// When it was last known to be the table's latest version: loaded, brought up
    /// to date, or written by this process (the request that told it began then).
    current_at: std::time::Instant,
}

/// What tells one commit file at a version from another written there later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommitStamp {
    /// A local file's size and modification time.
    Local(u64, std::time::SystemTime),
    /// The time an object store gives the file in a listing, in milliseconds (S3 and
    /// Azure give whole seconds): a table created again in the same second with as
    /// many commits is not told apart.
    Listed(i64),
}

/// The [`CommitStamp`] of `table`'s commit file at its version: for a local table by a
/// lookup of the file, else as the load listed it (nothing is asked of the store).
fn commit_stamp(table: &deltalake::DeltaTable) -> Option<CommitStamp> {
    let version = table.version()?;
    let url = table.table_url();
    if url.scheme() != "file" {
        return table
            .snapshot()
            .ok()?
            .version_timestamp(version)
            .map(CommitStamp::Listed);
    }
    let root = url.to_file_path().ok()?;
    let meta = std::fs::metadata(root.join(format!("_delta_log/{version:020}.json"))).ok()?;
    Some(CommitStamp::Local(meta.len(), meta.modified().ok()?))
}

/// What one listing of a table's log from the commit at a version says of it.
#[derive(Debug, PartialEq, Eq)]
enum LogTail {
    /// The commit file is the one kept, and no commit comes after it.
    Latest,
    /// The commit file is the one kept; commits come after it.
    Newer,
    /// The commit file is gone (the table was deleted, or log cleanup removed it) or
    /// another (the table was deleted and created again).
    Other,
}

impl fmt::Debug for KeptTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeptTable")
            .field("table", &self.table.table_url().as_str())
            .field("version", &self.table.version())
            .field("loaded_at", &self.loaded_at)
            .field("checked_at", &self.checked_at)
            .finish()
    }
}

impl KeptTable {
    /// A table just loaded afresh.
    pub fn loaded(table: deltalake::DeltaTable) -> Self {
        Self::loaded_when(table, std::time::Instant::now())
    }

    /// A table loaded afresh by requests that began at `asked`.
    fn loaded_when(table: deltalake::DeltaTable, asked: std::time::Instant) -> Self {
        let version = table.version().unwrap_or_default();
        KeptTable {
            stamp: commit_stamp(&table),
            table,
            loaded_at: version,
            checked_at: version,
            current_at: asked,
        }
    }

    /// `table`, advanced from this one (by a write, say): it keeps this one's history.
    pub fn advanced_to(&self, table: deltalake::DeltaTable) -> Self {
        KeptTable {
            stamp: commit_stamp(&table),
            table,
            loaded_at: self.loaded_at,
            checked_at: self.checked_at,
            current_at: std::time::Instant::now(),
        }
    }

    /// The table at the version it was last brought to.
    pub fn table(&self) -> &deltalake::DeltaTable {
        &self.table
    }

    /// Brings the table to its latest version, or to `version`, from the commits after
    /// the version it has. `Ok(false)` when it is better loaded afresh: a newer
    /// checkpoint exists and it was advanced by [`RELOAD_CHECK_EVERY`] commits since it
    /// was loaded or last looked (it is advanced all the same), or its commit file at
    /// its version is gone or another than the one it was read from: the table was
    /// deleted, and maybe created again, under this process (it is left as it is).
    ///
    /// The commit file is checked for a local table by a lookup, and on an object store
    /// (when bringing the table to its latest version) by one listing of the log from
    /// it, which also tells whether commits came after it; delta-rs lists the log only
    /// when some did. A local table is checked for a commit after its own by a lookup
    /// too (by two file lookups); when there is none, its log is not listed.
    pub async fn advance(&mut self, version: Option<u64>) -> DeltaResult<bool> {
        let asked = std::time::Instant::now();
        let local = self.table.table_url().scheme() == "file";
        if local && self.stamp.is_some() && commit_stamp(&self.table) != self.stamp {
            tracing::debug!(url = %self.table.table_url(), version = ?self.table.version(), "the commit file kept is gone or another: loading afresh");
            return Ok(false);
        }
        let latest = match (version, self.table.version()) {
            (None, Some(current)) if local => is_latest_local(self.table.table_url(), current),
            (None, Some(current)) => match self.list_tail(current).await? {
                LogTail::Latest => true,
                LogTail::Newer => false,
                LogTail::Other => {
                    tracing::debug!(url = %self.table.table_url(), version = current, "the commit file kept is gone or another: loading afresh");
                    return Ok(false);
                }
            },
            _ => false,
        };
        if !latest {
            self.table.update_incremental(version).await?;
            self.stamp = commit_stamp(&self.table);
        }
        if version.is_none() {
            self.current_at = asked;
        }
        let now = self.table.version().unwrap_or_default();
        if now < self.checked_at + RELOAD_CHECK_EVERY {
            return Ok(true);
        }
        self.checked_at = now;
        let newer = last_checkpoint(&self.table)
            .await
            .is_some_and(|checkpoint| checkpoint > self.loaded_at);
        Ok(!newer)
    }

    /// Lists the log of the table on its object store from its commit at `version`
    /// (one request on S3 and GCS, which start a listing at a key), compares that
    /// commit with the one kept, and records it when none was.
    async fn list_tail(&mut self, version: u64) -> DeltaResult<LogTail> {
        use futures::TryStreamExt;
        use object_store::path::Path;
        let store = self.table.log_store().object_store(None);
        let log = Path::from("_delta_log");
        // Every name of this version and after it sorts after this one.
        let from = Path::from(format!("_delta_log/{version:020}"));
        let listed: Vec<object_store::ObjectMeta> = store
            .list_with_offset(Some(&log), &from)
            .try_collect()
            .await?;
        let commit_version = |meta: &object_store::ObjectMeta| -> Option<u64> {
            let name = meta.location.filename()?;
            let digits = name.strip_suffix(".json")?;
            (digits.len() == 20).then(|| digits.parse().ok())?
        };
        let Some(own) = listed.iter().find(|m| commit_version(m) == Some(version)) else {
            return Ok(LogTail::Other);
        };
        let seen = CommitStamp::Listed(own.last_modified.timestamp_millis());
        match self.stamp {
            Some(kept) if kept != seen => return Ok(LogTail::Other),
            Some(_) => {}
            None => self.stamp = Some(seen),
        }
        let newer = listed
            .iter()
            .any(|m| commit_version(m).is_some_and(|v| v > version));
        Ok(if newer {
            LogTail::Newer
        } else {
            LogTail::Latest
        })
    }
}

/// Whether `version` is the latest of the local table at `url`, told by two file
/// lookups instead of a listing of its log (which object_store's local store makes by
/// walking the whole directory, and the Delta kernel hands over a file at a time).
///
/// Commits are numbered without gaps, and log cleanup removes the oldest commits
/// first: while commit `version` is there, so is every commit after it, so no commit
/// `version + 1` means none after `version`. Without commit `version` (cleaned up), or
/// for a table that is not local, `false`: the caller lists the log.
fn is_latest_local(url: &Url, version: u64) -> bool {
    let Some(log) = (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten()
        .map(|root| root.join("_delta_log"))
    else {
        return false;
    };
    let commit = |v: u64| log.join(format!("{v:020}.json"));
    commit(version).is_file() && !commit(version + 1).exists()
}

/// The version of the table's newest checkpoint by its `_last_checkpoint` file, if
/// that is there and readable.
async fn last_checkpoint(table: &deltalake::DeltaTable) -> Option<u64> {
    use object_store::ObjectStoreExt;
    let store = table.log_store().object_store(None);
    let path = object_store::path::Path::from("_delta_log/_last_checkpoint");
    let bytes = store.get(&path).await.ok()?.bytes().await.ok()?;
    let hint: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    hint.get("version")?.as_u64()
}

/// A table by location and the options it is opened with.
type TableKey = (Url, StorageOptions);

/// The tables a caller keeps between calls, by location: each brought up to date with
/// its new commits instead of read afresh from its last checkpoint. Cheap to clone; the
/// clones share what they keep. latefill's `Engine` owns one (in the executor's
/// `Session`) and passes it down, so that what one call loaded the next advances; a
/// program with several engines on the same tables may give them one.
#[derive(Clone, Default)]
pub struct Tables {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The latest version of each table loaded.
    loaded: Mutex<HashMap<TableKey, KeptTable>>,
    /// The loads of each table's latest version, which the loads asked for together
    /// share ([`Coalesced`]): the table, or no table there
    /// ([`DeltaTableError::NotATable`]'s words).
    loading: Mutex<HashMap<TableKey, Arc<Coalesced<Loaded>>>>,
}

/// What a load of a table's latest version found: the table, or no table there, in
/// [`DeltaTableError::NotATable`]'s words.
type Loaded = std::result::Result<deltalake::DeltaTable, String>;

impl fmt::Debug for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loaded = self.inner.loaded.lock().expect("not poisoned");
        f.debug_struct("Tables")
            .field(
                "kept",
                &loaded
                    .keys()
                    .map(|(url, _)| url.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Tables {
    /// Keeps nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table at `url`, at its latest version or at `version`, read once: a table
    /// loaded before is brought up to date (see [`KeptTable`]) instead of replaying
    /// its log from the last checkpoint, which on object storage costs two requests a
    /// commit. A load of the latest version that another task is making is waited
    /// for; when that load began after this call, its answer is this call's too, else
    /// the table is brought up to date again ([`Coalesced`]).
    ///
    /// A version older than the one kept is loaded afresh. A table that was replaced
    /// at the same location is not noticed here: the detector notices it, and the
    /// caller then calls [`Tables::forget`].
    pub async fn load(
        &self,
        url: &Url,
        options: &StorageOptions,
        version: Option<u64>,
    ) -> DeltaResult<deltalake::DeltaTable> {
        let key = (url.clone(), options.clone());
        if version.is_some() {
            return match self.advance_kept(&key, version).await {
                Some(table) => Ok(table),
                None => self.load_afresh_at(&key, version).await,
            };
        }
        let loads = self
            .inner
            .loading
            .lock()
            .expect("not poisoned")
            .entry(key.clone())
            .or_default()
            .clone();
        let loaded = loads
            .call(
                |_| true,
                || async {
                    let table = match self.advance_kept(&key, None).await {
                        Some(table) => Ok(table),
                        None => self.load_afresh_at(&key, None).await,
                    };
                    match table {
                        Ok(table) => Ok(Ok(table)),
                        Err(DeltaTableError::NotATable(words)) => Ok(Err(words)),
                        Err(e) => Err(e),
                    }
                },
            )
            .await?;
        loaded.map_err(DeltaTableError::NotATable)
    }

    /// The table at `key`, read from its log (at `version`, or the latest), and kept
    /// when it is the latest.
    async fn load_afresh_at(
        &self,
        key: &TableKey,
        version: Option<u64>,
    ) -> DeltaResult<deltalake::DeltaTable> {
        let asked = std::time::Instant::now();
        let mut table = table_builder(&key.0, &key.1)?.build()?;
        match version {
            None => table.load().await?,
            Some(v) => table.load_version(v).await?,
        }
        if version.is_none() {
            self.keep(key.clone(), KeptTable::loaded_when(table.clone(), asked));
        }
        Ok(table)
    }

    /// The table kept for `key`, brought to its latest version or to `version`; `None`
    /// when none is kept, `version` is older than the one kept, or it is better loaded
    /// afresh (then it is no longer kept).
    async fn advance_kept(
        &self,
        key: &TableKey,
        version: Option<u64>,
    ) -> Option<deltalake::DeltaTable> {
        let url = &key.0;
        let mut kept = self
            .inner
            .loaded
            .lock()
            .expect("not poisoned")
            .get(key)
            .cloned()?;
        let current = kept.table.version();
        let advanced = match (version, current) {
            (None, Some(_)) => kept.advance(None).await,
            (Some(v), Some(c)) if v >= c => kept.advance(Some(v)).await,
            _ => return None,
        };
        match advanced {
            Ok(true) => {
                let table = kept.table.clone();
                if version.is_none() {
                    self.keep(key.clone(), kept);
                }
                Some(table)
            }
            Ok(false) => {
                tracing::debug!(%url, version = ?kept.table.version(), "loading afresh");
                // The table loaded next replaces the one kept, whatever its version.
                self.forget(url);
                None
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "could not advance the loaded table; loading afresh");
                self.forget(url);
                None
            }
        }
    }

    /// Keeps `kept` for its location unless a newer version is kept already.
    fn keep(&self, key: TableKey, kept: KeptTable) {
        let mut loaded = self.inner.loaded.lock().expect("not poisoned");
        let newer = loaded
            .get(&key)
            .is_none_or(|k| k.table.version() <= kept.table.version());
        if newer {
            loaded.insert(key, kept);
        }
    }

    /// Keeps `table` as the latest version of `url` known, e.g. the table a write
    /// returned; an older version than the one kept is ignored.
    pub fn remember(&self, url: &Url, options: &StorageOptions, table: &deltalake::DeltaTable) {
        let key = (url.clone(), options.clone());
        let kept = match self.inner.loaded.lock().expect("not poisoned").get(&key) {
            // A write advanced the table kept.
            Some(kept) => kept.advanced_to(table.clone()),
            None => KeptTable::loaded(table.clone()),
        };
        self.keep(key, kept);
    }

    /// The table at `url` at `version`, loaded afresh (from its newest checkpoint at or
    /// before `version`), and kept unless a newer version is kept: for a caller that
    /// has just written the checkpoint of `version`, which this reads instead of the
    /// commits before it.
    pub async fn load_afresh(
        &self,
        url: &Url,
        options: &StorageOptions,
        version: u64,
    ) -> DeltaResult<deltalake::DeltaTable> {
        let mut table = table_builder(url, options)?.build()?;
        table.load_version(version).await?;
        self.keep(
            (url.clone(), options.clone()),
            KeptTable::loaded(table.clone()),
        );
        Ok(table)
    }

    /// The table kept for `url` (see [`Tables::load`]), at the version it was last
    /// brought to, without looking for newer commits; `None` when none is kept.
    ///
    /// For a caller that knows by other means which commits came after that version.
    pub fn kept(&self, url: &Url, options: &StorageOptions) -> Option<deltalake::DeltaTable> {
        self.inner
            .loaded
            .lock()
            .expect("not poisoned")
            .get(&(url.clone(), options.clone()))
            .map(|kept| kept.table.clone())
    }

    /// [`Tables::kept`] if it was known to be the table's latest version at `since` or
    /// after (loaded or brought up to date by requests that began then, or written by
    /// this process); `None` otherwise. Asks the store nothing.
    ///
    /// For a caller that reads a table as of a moment rather than at its very latest:
    /// a daily run reads the source and target as they were when it began, and loads
    /// them once for that, not again after its claim.
    pub fn current_since(
        &self,
        url: &Url,
        options: &StorageOptions,
        since: std::time::Instant,
    ) -> Option<deltalake::DeltaTable> {
        self.inner
            .loaded
            .lock()
            .expect("not poisoned")
            .get(&(url.clone(), options.clone()))
            .filter(|kept| kept.current_at >= since)
            .map(|kept| kept.table.clone())
    }

    /// [`Tables::kept`], or, when another task is loading the table, the table that
    /// load keeps once it ends; `None` when neither. Asks the store nothing: for a
    /// caller that may decide on a table a little behind (and checks again on the
    /// latest one before it refuses anything).
    pub async fn kept_or_awaited(
        &self,
        url: &Url,
        options: &StorageOptions,
    ) -> Option<deltalake::DeltaTable> {
        if let Some(table) = self.kept(url, options) {
            return Some(table);
        }
        self.load_under_way(url, options)?.settled().await;
        self.kept(url, options)
    }

    /// The load of the latest version of `url` another task is making, if any.
    fn load_under_way(
        &self,
        url: &Url,
        options: &StorageOptions,
    ) -> Option<Arc<Coalesced<Loaded>>> {
        self.inner
            .loading
            .lock()
            .expect("not poisoned")
            .get(&(url.clone(), options.clone()))
            .cloned()
    }

    /// [`Tables::current_since`], once the load of the table another task is making,
    /// if any, has ended. Asks the store nothing.
    pub async fn current_or_awaited(
        &self,
        url: &Url,
        options: &StorageOptions,
        since: std::time::Instant,
    ) -> Option<deltalake::DeltaTable> {
        if let Some(loads) = self.load_under_way(url, options) {
            loads.settled().await;
        }
        self.current_since(url, options, since)
    }

    /// Drops what is kept of `url`: its next [`Tables::load`] reads the log afresh.
    pub fn forget(&self, url: &Url) {
        self.inner
            .loaded
            .lock()
            .expect("not poisoned")
            .retain(|(kept, _), _| kept != url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{open_or_new, open_table};
    use std::sync::Arc;

    /// Appends one commit (one row) to the table at `url`, which writes a checkpoint
    /// every `checkpoint_interval` commits; returns its version.
    async fn append(url: &Url, checkpoint_interval: &str) -> u64 {
        append_with(url, &[("delta.checkpointInterval", checkpoint_interval)]).await
    }

    /// Appends one commit (one row) to the table at `url`, created with `properties`;
    /// returns its version.
    async fn append_with(url: &Url, properties: &[(&str, &str)]) -> u64 {
        write_one(url, properties).await.version().unwrap()
    }

    /// Appends one commit (one row) to the table at `url`, created with `properties`;
    /// returns the table the write returned.
    async fn write_one(url: &Url, properties: &[(&str, &str)]) -> deltalake::DeltaTable {
        use deltalake::arrow::array::Int64Array;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        use deltalake::arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let table = open_or_new(url, &StorageOptions::new()).await.unwrap();
        table
            .write(vec![batch])
            .with_configuration(properties.iter().map(|(k, v)| (*k, Some(*v))))
            .await
            .unwrap()
    }

    /// A new table of one commit, created with `properties`, loaded and kept.
    async fn new_kept_table(properties: &[(&str, &str)]) -> (tempfile::TempDir, Url, KeptTable) {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        write_one(&url, properties).await;
        let table = open_table(&url, &StorageOptions::new()).await.unwrap();
        (dir, url, KeptTable::loaded(table))
    }

    /// What `advance` says after each of `commits` more commits by another writer.
    async fn advance_after_each_commit(
        url: &Url,
        kept: &mut KeptTable,
        checkpoint_interval: &str,
        commits: u64,
    ) -> Vec<bool> {
        let mut answers = Vec::new();
        for _ in 0..commits {
            let version = append(url, checkpoint_interval).await;
            answers.push(kept.advance(None).await.unwrap());
            assert_eq!(kept.table().version(), Some(version));
        }
        answers
    }

    /// A table counts as current since a moment only if a load that began then or
    /// later found it latest: a later load advances it and makes it current again.
    #[tokio::test]
    async fn a_table_is_current_since_the_load_that_found_it_latest_began() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let options = StorageOptions::new();
        write_one(&url, &[]).await;
        let tables = Tables::new();
        let before = std::time::Instant::now();
        tables.load(&url, &options, None).await.unwrap();
        let after = std::time::Instant::now();
        let current = |since| tables.current_since(&url, &options, since);
        assert_eq!(current(before).unwrap().version(), Some(0));
        assert!(current(after).is_none(), "loaded before `after`");

        let version = append(&url, "10").await;
        assert_eq!(
            current(before).unwrap().version(),
            Some(0),
            "asks the store nothing"
        );
        tables.load(&url, &options, None).await.unwrap();
        assert_eq!(current(after).unwrap().version(), Some(version));
        assert!(
            tables
                .current_since(&url, &options, std::time::Instant::now())
                .is_none()
        );
    }

    /// Loads side by side where there is no table all find none (those that waited
    /// share the answer of the one they waited for), and the next load after the
    /// table is created finds it: no answer outlives the loads it was for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_that_find_no_table_leave_no_answer_behind() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let tables = Tables::new();
        let loads: Vec<_> = (0..4)
            .map(|_| {
                let (tables, url) = (tables.clone(), url.clone());
                tokio::spawn(async move {
                    tables
                        .load(&url, &StorageOptions::new(), None)
                        .await
                        .map(|_| ())
                })
            })
            .collect();
        for load in loads {
            let found = load.await.unwrap();
            assert!(
                matches!(found, Err(DeltaTableError::NotATable(_))),
                "{found:?}"
            );
        }
        write_one(&url, &[]).await;
        let table = tables.load(&url, &StorageOptions::new(), None).await;
        assert_eq!(table.unwrap().version(), Some(0));
    }

    /// An object store whose listings take 20 ms, as an object store's do, and are
    /// counted; one for the whole test process, under the scheme `slowlist://`.
    mod slow_listings {
        use std::sync::{Arc, LazyLock};

        use deltalake::logstore::{
            LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
            default_logstore,
        };
        use object_store::path::Path;
        use url::Url;

        use crate::storage::counting::Counting;

        pub(super) static STORE: LazyLock<Arc<Counting>> = LazyLock::new(|| {
            let url = Url::parse("slowlist://").unwrap();
            deltalake::logstore::object_store_factories().insert(url.clone(), Arc::new(Factory));
            deltalake::logstore::logstore_factories().insert(url, Arc::new(Factory));
            Arc::new(Counting::with_list_delay(std::time::Duration::from_millis(
                20,
            )))
        });

        struct Factory;

        impl ObjectStoreFactory for Factory {
            fn parse_url_opts(
                &self,
                url: &Url,
                _: &StorageConfig,
            ) -> deltalake::DeltaResult<(ObjectStoreRef, Path)> {
                Ok((STORE.clone(), Path::from_url_path(url.path())?))
            }
        }

        impl LogStoreFactory for Factory {
            fn with_options(
                &self,
                prefixed_store: ObjectStoreRef,
                root_store: ObjectStoreRef,
                location: &Url,
                options: &StorageConfig,
            ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
                Ok(default_logstore(
                    prefixed_store,
                    root_store,
                    location,
                    options,
                ))
            }
        }
    }

    /// Loads of the latest version asked for together share a listing: eight make one
    /// or two (the second for those asked while the first was under way), not eight.
    /// A load asked for after a commit is never answered by a listing from before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_asked_together_share_a_listing_and_none_answers_one_asked_after_it() {
        use std::sync::atomic::Ordering;
        let store = slow_listings::STORE.clone();
        let url = Url::parse("slowlist:///loads_asked_together/").unwrap();
        write_one(&url, &[]).await;
        let tables = Tables::new();
        let options = StorageOptions::new();
        tables.load(&url, &options, None).await.unwrap();

        let before = store.listings.load(Ordering::SeqCst);
        let loads = (0..8).map(|_| tables.load(&url, &options, None));
        for table in futures::future::join_all(loads).await {
            assert_eq!(table.unwrap().version(), Some(0));
        }
        let listings = store.listings.load(Ordering::SeqCst) - before;
        assert!((1..=2).contains(&listings), "{listings} listings");

        // A load under way while a commit lands, and one asked for after the commit:
        // the second sees the commit.
        let under_way = tokio::spawn({
            let (tables, url, options) = (tables.clone(), url.clone(), options.clone());
            async move { tables.load(&url, &options, None).await.unwrap() }
        });
        write_one(&url, &[]).await;
        let after = tables.load(&url, &options, None).await.unwrap();
        assert_eq!(after.version(), Some(1));
        assert!(under_way.await.unwrap().version() <= Some(1));
    }

    #[tokio::test]
    async fn a_kept_table_is_loaded_afresh_once_it_has_a_newer_checkpoint() {
        let (_dir, url, mut kept) = new_kept_table(&[("delta.checkpointInterval", "10")]).await;

        // Checkpoints at versions 9 and 19; it looks once it was advanced by 20.
        let n = RELOAD_CHECK_EVERY as usize;
        let answers = advance_after_each_commit(&url, &mut kept, "10", 2 * n as u64).await;
        let mut expected = vec![true; 2 * n];
        expected[n - 1] = false;
        expected[2 * n - 1] = false;
        assert_eq!(answers, expected);

        // Loaded afresh, it starts counting again.
        let mut kept = KeptTable::loaded(kept.table().clone());
        let answers = advance_after_each_commit(&url, &mut kept, "10", 1).await;
        assert_eq!(answers, [true]);
    }

    /// A table this process writes is kept as each write returns it, already the
    /// latest: it is loaded afresh all the same once a newer checkpoint exists.
    #[tokio::test]
    async fn a_table_kept_from_its_own_writes_is_loaded_afresh_too() {
        let properties = [("delta.checkpointInterval", "10")];
        let (_dir, url, mut kept) = new_kept_table(&properties).await;
        let mut answers = Vec::new();
        for _ in 0..RELOAD_CHECK_EVERY {
            kept = kept.advanced_to(write_one(&url, &properties).await);
            answers.push(kept.advance(None).await.unwrap());
        }
        let mut expected = vec![true; RELOAD_CHECK_EVERY as usize];
        expected[RELOAD_CHECK_EVERY as usize - 1] = false;
        assert_eq!(answers, expected);
    }

    /// The kept version's commit, and those after it, were removed by log cleanup: the
    /// kept table says to load it afresh, and a load gives the latest version.
    #[tokio::test]
    async fn a_kept_table_whose_commits_were_cleaned_up_since_is_loaded_afresh() {
        let properties = [
            ("delta.checkpointInterval", "5"),
            ("delta.logRetentionDuration", "interval 0 seconds"),
        ];
        let (dir, url, mut kept) = new_kept_table(&properties).await;
        let options = StorageOptions::new();
        let tables = Tables::new();
        assert_eq!(
            tables.load(&url, &options, None).await.unwrap().version(),
            Some(0)
        );
        let mut latest = 0;
        for _ in 0..7 {
            latest = append_with(&url, &properties).await;
        }
        let log = dir.path().join("_delta_log");
        assert!(!log.join(format!("{:020}.json", 0)).exists(), "cleaned up");
        assert!(!kept.advance(None).await.unwrap());
        assert_eq!(
            tables.load(&url, &options, None).await.unwrap().version(),
            Some(latest)
        );
    }

    /// A local table deleted and created again under the process: the kept table,
    /// whose commit file is now another, says to load it afresh.
    #[tokio::test]
    async fn a_kept_local_table_created_again_is_loaded_afresh() {
        let properties = [("delta.checkpointInterval", "1000")];
        let (dir, url, mut kept) = new_kept_table(&properties).await;
        append_with(&url, &properties).await;
        assert!(kept.advance(None).await.unwrap());
        assert_eq!(kept.table().version(), Some(1));
        std::fs::remove_dir_all(dir.path().join("_delta_log")).unwrap();
        for _ in 0..3 {
            append_with(&url, &properties).await;
        }
        assert!(!kept.advance(None).await.unwrap());
        assert_eq!(kept.table().version(), Some(1), "left as it was");
    }

    #[tokio::test]
    async fn a_kept_table_without_checkpoints_is_only_advanced() {
        let (_dir, url, mut kept) = new_kept_table(&[("delta.checkpointInterval", "1000")]).await;
        let answers =
            advance_after_each_commit(&url, &mut kept, "1000", 2 * RELOAD_CHECK_EVERY).await;
        assert!(answers.iter().all(|&advanced| advanced), "{answers:?}");
    }
}
