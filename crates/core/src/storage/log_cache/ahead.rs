//! Data files read ahead for the partitions a process is about to run.
//!
//! A partition's run reads its source files, writes its own, then commits: on S3 at
//! 20 ms a request, the read is a third of a small partition's time, and it needs
//! nothing the run does before it. Once a partition is claimed (a backfill claims the
//! next batch while the last one runs), its files can be read in the background
//! ([`read_ahead`]); the run's reads of them are then served from memory, or wait for
//! the read under way rather than asking the store again.
//!
//! The bytes are served within the process only, for the same object (the same path
//! under the same store), and only while the [`ReadAhead`] that asked for them is held:
//! dropping it lets them go. A data file is written once under a name of its own and
//! never rewritten (Delta names each with a fresh UUID), so a copy read a moment
//! before is the file. At most [`BUDGET`] bytes are read ahead at once, and
//! [`LARGEST`] for one partition; a partition whose files would pass either is read
//! as it runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

/// The most bytes read ahead and held at once, across the process.
const BUDGET: u64 = 256 * 1024 * 1024;
/// The most bytes one read ahead takes: a partition larger than this is read as it
/// runs (its run is long next to one request, and its bytes better not held twice).
const LARGEST: u64 = 64 * 1024 * 1024;

/// A whole file's read, shared by whoever waits for it.
pub(super) type Read =
    Shared<BoxFuture<'static, Result<(ObjectMeta, Bytes), Arc<object_store::Error>>>>;

/// The reads under way or done, by the caching store's key, and the bytes reserved
/// for them.
#[derive(Default)]
struct Reads {
    by_key: HashMap<String, Read>,
    reserved: u64,
}

static READS: LazyLock<Mutex<Reads>> = LazyLock::new(Mutex::default);

fn reads() -> std::sync::MutexGuard<'static, Reads> {
    READS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

tokio::task_local! {
    /// Set while a read ahead asks the store: the caching store then reads the whole
    /// file and shares the read under its key ([`start`]).
    static ASKING: Arc<Held>;
}

/// The keys of one [`ReadAhead`]'s files, and the bytes reserved for them: released
/// when the last holder (the caller's handle, the task reading) lets go.
struct Held {
    keys: Mutex<Vec<String>>,
    reserved: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut *self.keys.lock().unwrap_or_else(|p| p.into_inner()));
        let mut reads = reads();
        for key in keys {
            reads.by_key.remove(&key);
        }
        reads.reserved -= self.reserved;
    }
}

/// Files being read ahead ([`read_ahead`]); their bytes are let go when it is dropped.
pub struct ReadAhead {
    held: Arc<Held>,
    files: usize,
}

impl ReadAhead {
    /// How many files it reads.
    pub fn files(&self) -> usize {
        self.files
    }
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("files", &self.files)
            .field("bytes", &self.held.reserved)
            .finish()
    }
}

/// Starts reading `files` (paths in `store`, with their sizes from the log) of the
/// table at `url` in the background, for a run about to read them. `None`, and nothing
/// read, where nothing would serve the copies (local files, which cost no request;
/// `LATEFILL_LOG_CACHE=off`), where there are no files, or where their bytes would pass
/// the budget.
pub fn read_ahead(
    url: &Url,
    store: Arc<dyn ObjectStore>,
    files: Vec<(Path, u64)>,
) -> Option<ReadAhead> {
    if !reads_ahead(url) || files.is_empty() {
        return None;
    }
    start_reading(store, files)
}

/// Whether files of the table at `url` can be read ahead: it is on an object store,
/// whose stores read through the cache (not local files, which cost no request; not
/// with `LATEFILL_LOG_CACHE=off`).
pub fn reads_ahead(url: &Url) -> bool {
    !matches!(url.scheme(), "file" | "memory") && super::active()
}

/// [`read_ahead`] of `files` in `store`, whichever store it is.
pub(super) fn start_reading(
    store: Arc<dyn ObjectStore>,
    files: Vec<(Path, u64)>,
) -> Option<ReadAhead> {
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    if total > LARGEST {
        return None;
    }
    {
        let mut reads = reads();
        if reads.reserved + total > BUDGET {
            return None;
        }
        reads.reserved += total;
    }
    let held = Arc::new(Held {
        keys: Mutex::new(Vec::new()),
        reserved: total,
    });
    let count = files.len();
    let mut reading = Box::pin(ASKING.scope(held.clone(), async move {
        // What went wrong is the run's to find: it reads the file again.
        let gets = files.iter().map(|(path, _)| store.get(path));
        futures::future::join_all(gets).await;
    }));
    // Polled once here, each read is registered before this returns ([`start`] is
    // reached before the first wait): a run started next finds it, and waits for it
    // rather than reading the file too. The task then drives the reads on.
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    if reading.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(reading);
    }
    Some(ReadAhead { held, files: count })
}

/// Within a read ahead, the read of the file at `key`, started with `get` (the whole
/// file) unless one is under way; outside one, `None`.
pub(super) fn start(
    key: &str,
    get: impl FnOnce() -> BoxFuture<'static, Result<(ObjectMeta, Bytes), object_store::Error>>,
) -> Option<Read> {
    let held = ASKING.try_with(Arc::clone).ok()?;
    let mut reads = reads();
    if let Some(read) = reads.by_key.get(key) {
        return Some(read.clone());
    }
    let read = get().map(|r| r.map_err(Arc::new)).boxed().shared();
    reads.by_key.insert(key.to_owned(), read.clone());
    held.keys
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(key.to_owned());
    Some(read)
}

/// The read ahead of the file at `key`, if one was asked for and is still held.
pub(super) fn find(key: &str) -> Option<Read> {
    reads().by_key.get(key).cloned()
}

/// The bytes reserved for reads ahead now held.
#[cfg(test)]
pub(super) fn reserved() -> u64 {
    reads().reserved
}
