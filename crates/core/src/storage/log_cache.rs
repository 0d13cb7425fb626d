//! A cache, for the whole process, of the Delta log files read from object stores.
//!
//! A commit or checkpoint file never changes once written: the protocol writes each
//! version once (put-if-absent). Yet a process reads the same ones again and again:
//! delta-rs reads every commit since the checkpoint twice when it loads a table (once
//! for the protocol and metadata, once for the files), the detector reads the new
//! commits once more, and a long-lived worker reloads the state table's commits at
//! every claim. On an object store each read is a request of 10 to 50 ms.
//!
//! The cache sits under every object store delta-rs opens for latefill (S3, Azure,
//! GCS; not local files, which cost no request), installed in delta-rs's store
//! factories by [`install`]. It keeps files under `_delta_log/` except
//! `_last_checkpoint` (rewritten in place), and serves one only when the latest
//! listing of it this process saw gives the same e-tag as the copy: a table deleted
//! and created again under the same path lists new e-tags (S3 and GCS derive them
//! from the content, Azure from the write), and its files are read afresh. A file
//! never listed is read from the store. A commit this process writes is kept as
//! written, under the e-tag the store gave it. A ranged read of a small log file (a
//! checkpoint's footer, then its columns) reads the whole file once.
//!
//! The files are also kept on disk ([`disk`]), for the next process on the machine:
//! tomorrow's run reads only the commits written since today's. They go under
//! `LATEFILL_CACHE_DIR`, or the user's cache directory (`~/.cache/latefill/log` on
//! Linux), at most 256 MB.
//!
//! `LATEFILL_LOG_CACHE=memory` keeps nothing on disk; `LATEFILL_LOG_CACHE=off` turns
//! the cache off (to measure what it saves).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use bytes::Bytes;
use deltalake::logstore::{ObjectStoreFactory, ObjectStoreRef, StorageConfig};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use url::Url;

use self::disk::Disk;

mod ahead;
mod disk;
pub mod pack;

pub use ahead::{ReadAhead, read_ahead, reads_ahead};

/// The most bytes the cache holds; the oldest files go first beyond it.
const CAPACITY: usize = 256 * 1024 * 1024;
/// The largest file it keeps (a big table's checkpoint is read as it comes).
const LARGEST: u64 = 16 * 1024 * 1024;

/// Wraps the store factories delta-rs registered for object stores (at start-up) so
/// that every store they make reads through the cache. Once per process; does
/// nothing when `LATEFILL_LOG_CACHE=off`.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if std::env::var("LATEFILL_LOG_CACHE").is_ok_and(|v| v == "off") {
            return;
        }
        let registry = deltalake::logstore::object_store_factories();
        let remote: Vec<Url> = registry
            .iter()
            .map(|entry| entry.key().clone())
            .filter(|url| !matches!(url.scheme(), "file" | "memory"))
            .collect();
        let disk = Disk::from_env().map(Arc::new);
        let _ = DISK.set(disk.clone());
        for url in remote {
            if let Some(inner) = registry.get(&url).map(|f| f.value().clone()) {
                let disk = disk.clone();
                registry.insert(url, Arc::new(CachingFactory { inner, disk }));
            }
        }
    });
}

/// The disk the installed cache keeps files on, if any; unset when the cache is off.
static DISK: OnceLock<Option<Arc<Disk>>> = OnceLock::new();

/// Whether the object stores delta-rs opens read through the cache.
fn active() -> bool {
    DISK.get().is_some()
}

/// A name for `text` that is stable across builds and machines.
fn fnv_key(text: &str) -> String {
    format!("{:016x}", disk::fnv1a(text.as_bytes()))
}

/// A delta-rs store factory whose stores read through the cache.
struct CachingFactory {
    inner: Arc<dyn ObjectStoreFactory>,
    disk: Option<Arc<Disk>>,
}

impl ObjectStoreFactory for CachingFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> deltalake::DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = self.inner.parse_url_opts(url, config)?;
        // Stores of one bucket at one endpoint share their files; another endpoint
        // (in the options) is another store.
        let scope = super::store_scope(url, &config.raw);
        Ok((
            Arc::new(CachingStore {
                inner: store,
                scope,
                disk: self.disk.clone(),
            }),
            path,
        ))
    }
}

/// Whether `path` is a log file that never changes once written.
fn immutable(path: &Path) -> bool {
    let text = path.as_ref();
    text.contains("_delta_log/")
        && !text.ends_with("_last_checkpoint")
        && !text.ends_with(".tmp")
        && !text.contains("/_delta_log/.")
}

/// A log file held in memory.
struct Held {
    meta: ObjectMeta,
    bytes: Bytes,
}

#[derive(Default)]
struct Cache {
    /// Each log file as last listed.
    listed: HashMap<String, ObjectMeta>,
    held: HashMap<String, Held>,
    /// The held files, oldest first.
    order: VecDeque<String>,
    bytes: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

impl Cache {
    fn listed(&mut self, key: String, meta: &ObjectMeta) {
        self.listed.insert(key, meta.clone());
    }

    /// The held copy of `key`, if the latest listing of it agrees with it.
    fn fresh(&self, key: &str) -> Option<(ObjectMeta, Bytes)> {
        let held = self.held.get(key)?;
        let listed = self.listed.get(key)?;
        (listed.e_tag.is_some() && listed.e_tag == held.meta.e_tag)
            .then(|| (held.meta.clone(), held.bytes.clone()))
    }

    fn hold(&mut self, key: String, meta: ObjectMeta, bytes: Bytes) {
        if meta.e_tag.is_none() || bytes.len() as u64 > LARGEST {
            return;
        }
        if let Some(old) = self.held.remove(&key) {
            self.bytes -= old.bytes.len();
            self.order.retain(|k| *k != key);
        }
        self.bytes += bytes.len();
        self.order.push_back(key.clone());
        self.held.insert(key, Held { meta, bytes });
        while self.bytes > CAPACITY {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.held.remove(&oldest) {
                self.bytes -= old.bytes.len();
            }
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(old) = self.held.remove(key) {
            self.bytes -= old.bytes.len();
            self.order.retain(|k| k != key);
        }
        self.listed.remove(key);
    }
}

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An object store reading log files through the cache.
#[derive(Debug)]
pub(crate) struct CachingStore {
    inner: ObjectStoreRef,
    scope: String,
    disk: Option<Arc<Disk>>,
}

impl CachingStore {
    #[cfg(test)]
    pub(crate) fn new(inner: ObjectStoreRef, scope: &str) -> Self {
        CachingStore {
            inner,
            scope: scope.to_owned(),
            disk: None,
        }
    }

    fn key(&self, path: &Path) -> String {
        format!("{} {path}", self.scope)
    }

    /// The copy of `key` held in memory or, failing that, on disk, if the latest
    /// listing of it agrees with it; a copy from disk is then held in memory.
    fn fresh(&self, key: &str) -> Option<(ObjectMeta, Bytes)> {
        let listed = {
            let cache = cache();
            if let Some(found) = cache.fresh(key) {
                return Some(found);
            }
            cache.listed.get(key)?.clone()
        };
        let bytes = self
            .disk
            .as_ref()?
            .read(key, listed.e_tag.as_deref()?, listed.size)?;
        cache().hold(key.to_owned(), listed.clone(), bytes.clone());
        Some((listed, bytes))
    }

    /// Holds `bytes`, the whole of the file `meta`, in memory and on disk.
    fn keep(&self, key: String, meta: ObjectMeta, bytes: Bytes) {
        if let (Some(disk), Some(e_tag)) = (&self.disk, &meta.e_tag)
            && bytes.len() as u64 <= LARGEST
        {
            disk.write(&key, e_tag, &bytes);
        }
        cache().hold(key, meta, bytes);
    }

    /// The read ahead of the data file at `location` ([`ahead`]), and whether this
    /// call is the read ahead itself (which then starts it).
    fn ahead(&self, location: &Path) -> Option<(ahead::Read, bool)> {
        let key = self.key(location);
        let get = || {
            let (inner, location) = (self.inner.clone(), location.clone());
            async move {
                let result = inner.get_opts(&location, GetOptions::default()).await?;
                let meta = result.meta.clone();
                Ok((meta, result.bytes().await?))
            }
            .boxed()
        };
        match ahead::start(&key, get) {
            Some(read) => Some((read, true)),
            None => ahead::find(&key).map(|read| (read, false)),
        }
    }

    /// Notes the log files of a listing.
    fn note_listed(
        &self,
        stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let scope = self.scope.clone();
        stream
            .inspect(move |item| {
                if let Ok(meta) = item
                    && immutable(&meta.location)
                {
                    cache().listed(format!("{scope} {}", meta.location), meta);
                }
            })
            .boxed()
    }
}

impl fmt::Display for CachingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (log files cached)", self.inner)
    }
}

/// A get result of `bytes`, the whole of the object `meta`, cut to `range`.
fn served(
    meta: ObjectMeta,
    bytes: Bytes,
    range: Option<&GetRange>,
) -> object_store::Result<GetResult> {
    let whole = 0..meta.size;
    let range: Range<u64> = match range {
        None => whole,
        Some(r) => r
            .as_range(meta.size)
            .map_err(|e| object_store::Error::Generic {
                store: "latefill log cache",
                source: Box::new(e),
            })?,
    };
    let slice = bytes.slice(range.start as usize..range.end as usize);
    Ok(GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(slice) }).boxed()),
        meta,
        range,
        attributes: Default::default(),
    })
}

/// Whether `options` ask for nothing but the object or a range of it.
fn plain(options: &GetOptions) -> bool {
    options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head
}

#[async_trait::async_trait]
impl ObjectStore for CachingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let kept = immutable(location).then(|| payload.clone());
        let result = self.inner.put_opts(location, payload, opts).await?;
        if let Some(payload) = kept {
            let bytes = Bytes::from(payload);
            let meta = ObjectMeta {
                location: location.clone(),
                last_modified: chrono::Utc::now(),
                size: bytes.len() as u64,
                e_tag: result.e_tag.clone(),
                version: result.version.clone(),
            };
            self.keep(self.key(location), meta, bytes);
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !immutable(location)
            && plain(&options)
            && let Some((read, asking)) = self.ahead(location)
        {
            match read.await {
                Ok((meta, bytes)) => return served(meta, bytes, options.range.as_ref()),
                Err(e) if asking => {
                    return Err(object_store::Error::Generic {
                        store: "latefill read ahead",
                        source: e.to_string().into(),
                    });
                }
                // The run reads it itself.
                Err(_) => {}
            }
        }
        if !immutable(location) || !plain(&options) {
            return self.inner.get_opts(location, options).await;
        }
        let key = self.key(location);
        if let Some((meta, bytes)) = self.fresh(&key) {
            return served(meta, bytes, options.range.as_ref());
        }
        // A log pack being read may hold it ([`pack`]).
        pack::wait().await;
        if let Some((meta, bytes)) = self.fresh(&key) {
            return served(meta, bytes, options.range.as_ref());
        }
        let listed_size = cache().listed.get(&key).map(|meta| meta.size);
        // A whole read, or a range of a small listed file: read all of it, keep it.
        let whole = options.range.is_none() || listed_size.is_some_and(|size| size <= LARGEST);
        if !whole {
            return self.inner.get_opts(location, options).await;
        }
        let range = options.range.clone();
        pack::read_from_store();
        let result = self
            .inner
            .get_opts(
                location,
                GetOptions {
                    range: None,
                    ..options
                },
            )
            .await?;
        let meta = result.meta.clone();
        let bytes = result.bytes().await?;
        self.keep(key, meta.clone(), bytes.clone());
        served(meta, bytes, range.as_ref())
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let slices = |bytes: Bytes| {
            ranges
                .iter()
                .all(|r| r.start <= r.end && r.end <= bytes.len() as u64)
                .then(|| {
                    ranges
                        .iter()
                        .map(|r| bytes.slice(r.start as usize..r.end as usize))
                        .collect()
                })
        };
        if immutable(location)
            && let Some((_, bytes)) = self.fresh(&self.key(location))
        {
            return Ok(ranges
                .iter()
                .map(|r| bytes.slice(r.start as usize..r.end as usize))
                .collect());
        }
        if !immutable(location)
            && let Some((read, _)) = self.ahead(location)
            && let Ok((_, bytes)) = read.await
            && let Some(found) = slices(bytes)
        {
            return Ok(found);
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let scope = self.scope.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |item| {
                if let Ok(path) = item {
                    cache().forget(&format!("{scope} {path}"));
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.note_listed(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.note_listed(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let result = self.inner.list_with_delimiter(prefix).await?;
        let mut cache = cache();
        for meta in result.objects.iter().filter(|m| immutable(&m.location)) {
            cache.listed(self.key(&meta.location), meta);
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        cache().forget(&self.key(to));
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        cache().forget(&self.key(to));
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use futures::TryStreamExt;
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;
    use crate::storage::counting::Counting;

    /// A caching store over a fresh counting store, in a scope of its own (the cache
    /// is the process's).
    fn stores(scope: &str) -> (Arc<Counting>, CachingStore) {
        let counting = Arc::new(Counting::default());
        let caching = CachingStore::new(counting.clone(), &format!("memory://{scope}"));
        (counting, caching)
    }

    #[tokio::test]
    async fn a_log_file_an_earlier_process_read_or_wrote_is_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let counting = Arc::new(Counting::default());
        let store = CachingStore {
            disk: Some(Arc::new(Disk::at(dir.path().to_owned()))),
            ..CachingStore::new(counting.clone(), "memory://disk")
        };
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        counting.put(&commit(0), "zero".into()).await.unwrap();
        store
            .put_opts(&commit(1), "one".into(), create)
            .await
            .unwrap();
        list_log(&store).await;
        assert_eq!(read(&store, &commit(0)).await, "zero");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 1);

        // The next process holds nothing in memory.
        for version in [0, 1] {
            cache().forget(&store.key(&commit(version)));
        }
        list_log(&store).await;
        assert_eq!(read(&store, &commit(0)).await, "zero");
        assert_eq!(read(&store, &commit(1)).await, "one");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 1, "both from disk");

        // The table created again: version 0 lists another e-tag.
        counting.put(&commit(0), "again".into()).await.unwrap();
        cache().forget(&store.key(&commit(0)));
        list_log(&store).await;
        assert_eq!(read(&store, &commit(0)).await, "again");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 2);
    }

    async fn list_log(store: &CachingStore) {
        let _: Vec<ObjectMeta> = store
            .list(Some(&Path::from("t/_delta_log")))
            .try_collect()
            .await
            .unwrap();
    }

    async fn read(store: &CachingStore, path: &Path) -> Bytes {
        store.get(path).await.unwrap().bytes().await.unwrap()
    }

    fn commit(version: u64) -> Path {
        Path::from(format!("t/_delta_log/{version:020}.json"))
    }

    /// A data file read ahead is read from the store once, whole, and served from
    /// memory to the reads after it (whole, a range, ranges) while the read ahead is
    /// held; once it is let go, so are its bytes, and a read asks the store.
    #[tokio::test]
    async fn a_data_file_read_ahead_is_served_from_memory_while_held() {
        let (counting, store) = stores("ahead");
        let store = Arc::new(store);
        let data = Path::from("t/event_time=2024-01-01/part-0.parquet");
        counting.put(&data, "0123456789".into()).await.unwrap();

        let ahead = ahead::start_reading(store.clone(), vec![(data.clone(), 10)]).unwrap();
        assert_eq!(ahead.files(), 1);
        assert_eq!(ahead::reserved(), 10);
        assert_eq!(read(&store, &data).await, "0123456789");
        assert_eq!(store.get_range(&data, 2..5).await.unwrap(), "234");
        let ranges = store.get_ranges(&data, &[0..1, 8..10]).await.unwrap();
        assert_eq!(ranges, ["0", "89"]);
        assert_eq!(counting.gets.load(Ordering::SeqCst), 1, "read once, ahead");

        drop(ahead);
        // The task reading ahead holds it too, until it ends.
        while ahead::reserved() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(read(&store, &data).await, "0123456789");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 2);

        // A partition whose files pass what one read ahead takes is read as it runs.
        let huge = vec![(data.clone(), 1 << 40)];
        assert!(ahead::start_reading(store.clone(), huge).is_none());
        assert_eq!(ahead::reserved(), 0);
        assert_eq!(counting.gets.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_listed_commit_is_read_from_the_store_once() {
        let (counting, store) = stores("read-once");
        counting.put(&commit(0), "zero".into()).await.unwrap();
        list_log(&store).await;
        assert_eq!(read(&store, &commit(0)).await, "zero");
        assert_eq!(read(&store, &commit(0)).await, "zero");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_commit_written_again_under_the_same_path_is_read_afresh_once_listed() {
        // A table deleted and created again: version 0 holds other content.
        let (counting, store) = stores("recreated");
        counting.put(&commit(0), "first".into()).await.unwrap();
        list_log(&store).await;
        assert_eq!(read(&store, &commit(0)).await, "first");
        counting.put(&commit(0), "second".into()).await.unwrap();
        list_log(&store).await;
        assert_eq!(read(&store, &commit(0)).await, "second");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_file_not_listed_and_last_checkpoint_are_always_read_from_the_store() {
        let (counting, store) = stores("unlisted");
        counting.put(&commit(0), "zero".into()).await.unwrap();
        read(&store, &commit(0)).await;
        read(&store, &commit(0)).await;
        assert_eq!(counting.gets.load(Ordering::SeqCst), 2, "never listed");

        let last = Path::from("t/_delta_log/_last_checkpoint");
        counting.put(&last, "{\"version\":1}".into()).await.unwrap();
        list_log(&store).await;
        read(&store, &last).await;
        counting.put(&last, "{\"version\":2}".into()).await.unwrap();
        list_log(&store).await;
        assert_eq!(read(&store, &last).await, "{\"version\":2}");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 4);

        // Nor a data file.
        let data = Path::from("t/part-0.parquet");
        counting.put(&data, "rows".into()).await.unwrap();
        let _: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        read(&store, &data).await;
        read(&store, &data).await;
        assert_eq!(counting.gets.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn ranges_of_a_listed_checkpoint_are_cut_from_one_whole_read() {
        let (counting, store) = stores("ranges");
        let checkpoint = Path::from("t/_delta_log/00000000000000000010.checkpoint.parquet");
        counting
            .put(&checkpoint, Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        list_log(&store).await;
        assert_eq!(store.get_range(&checkpoint, 6..10).await.unwrap(), "6789");
        assert_eq!(store.get_range(&checkpoint, 0..2).await.unwrap(), "01");
        let suffix = store
            .get_opts(
                &checkpoint,
                GetOptions {
                    range: Some(GetRange::Suffix(3)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(suffix.range, 7..10);
        assert_eq!(suffix.bytes().await.unwrap(), "789");
        let ranges = store.get_ranges(&checkpoint, &[1..3, 4..5]).await.unwrap();
        assert_eq!(ranges, vec![Bytes::from("12"), Bytes::from("4")]);
        assert_eq!(counting.gets.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_commit_this_process_wrote_is_not_read_back_and_a_lost_race_is_not_kept() {
        let (counting, store) = stores("written");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(&commit(0), "ours".into(), create.clone())
            .await
            .unwrap();
        list_log(&store).await;
        assert_eq!(read(&store, &commit(0)).await, "ours");
        assert_eq!(counting.gets.load(Ordering::SeqCst), 0);

        // Another writer took version 1 first: our put fails, theirs is read.
        counting.put(&commit(1), "theirs".into()).await.unwrap();
        let lost = store.put_opts(&commit(1), "ours".into(), create).await;
        assert!(matches!(
            lost,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        list_log(&store).await;
        assert_eq!(read(&store, &commit(1)).await, "theirs");
    }
}
