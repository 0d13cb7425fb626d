//! The log files a run read, packed into one object beside the state table, for the
//! next run on a machine that never ran latefill (a new container every day).
//!
//! On such a machine the log cache is empty, in memory and on disk: each commit since
//! a table's last checkpoint is a read of its own. latefill checkpoints the target and
//! the state table every 10 commits, but not the source, which it does not own: there,
//! the reads grow with every day since the source's last checkpoint (delta-rs writes
//! one every 100 commits). So a run on a new machine starts by reading the log files
//! the last such run held, packed as one object, while it lists the logs
//! ([`prefetch`]): one read instead of one per commit. It ends by writing the files it
//! holds, from each table's last checkpoint on, as the pack for the next ([`write`]).
//! A run on a machine that keeps its log cache writes the pack only when it read
//! several log files from the store (other machines ran meanwhile): otherwise the
//! pack's write would be the one request it waits for at its end, for nothing the next
//! new machine lacks but the day's commits.
//!
//! A file from a pack is held as if it had been read from the store, and served under
//! the same rule ([`super`]): only for a listing that gives the same e-tag. A pack that
//! is stale (commits since), of a table created again (other e-tags), damaged or
//! missing costs the reads it would have spared, nothing more. Runs of several
//! machines write the same pack in turn; the last one written is read.
//!
//! The pack is `<state table>/_latefill_log_pack/<pipeline>`: a line of JSON that
//! names each file (its cache key, e-tag, size and time), then their bytes, one after
//! another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{DISK, cache, fnv_key};

/// The first line's tag: what the file is, in which layout.
const TAG: &str = "latefill log pack 1";

/// The largest log file a pack carries: a checkpoint beyond it is read from the store.
const LARGEST_FILE: u64 = 1024 * 1024;

/// The most bytes of files a pack carries.
const CAPACITY: u64 = 16 * 1024 * 1024;

/// How long a read of a log file waits for the pack being read before it goes to
/// the store itself.
const WAIT: Duration = Duration::from_secs(5);

/// How many log files a run on a machine that keeps its log cache reads from the
/// store before it writes the pack.
const WRITE_AFTER_READS: usize = 4;

/// Whether this process looked for the pack: it runs on a machine that had not seen it.
static FETCHED: AtomicBool = AtomicBool::new(false);

/// How many log files this process read from the store, not from the cache.
static READ_FROM_STORE: AtomicUsize = AtomicUsize::new(0);

/// A log file was read from the store.
pub(super) fn read_from_store() {
    READ_FROM_STORE.fetch_add(1, Ordering::Relaxed);
}

/// One file of a pack.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The log cache's key: the store's scope, then the file's path.
    key: String,
    location: String,
    e_tag: String,
    size: u64,
    last_modified: chrono::DateTime<chrono::Utc>,
}

/// The pack of `pipeline`, in the store of its state table.
pub fn location(pipeline: &str) -> Path {
    let name: String = pipeline
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    Path::from(format!("_latefill_log_pack/{name}"))
}

/// The pack being read, which reads of log files wait for ([`wait`]).
static PENDING: LazyLock<Mutex<Option<Shared<BoxFuture<'static, ()>>>>> =
    LazyLock::new(Mutex::default);

/// Starts reading the pack at `path` of `store` (the state table's; `scope` names it
/// on this machine), unless this machine has read or written it before (its log cache
/// on disk then holds what the pack would: see [`super::disk`]), or the log cache is
/// off. The files are held in the cache as they arrive; meanwhile a read of a log file
/// that the cache does not hold waits for them ([`wait`]), up to a few seconds.
pub fn prefetch(scope: &str, path: Path, store: impl FnOnce() -> Option<Arc<dyn ObjectStore>>) {
    let Some(disk) = installed_disk() else {
        return;
    };
    let marker = fnv_key(&format!("{scope} {path}"));
    if disk.as_ref().is_some_and(|disk| disk.marked(&marker)) {
        return;
    }
    let Some(store) = store() else {
        return;
    };
    FETCHED.store(true, Ordering::Relaxed);
    let read = async move {
        match store.get(&path).await {
            Ok(found) => match found.bytes().await {
                Ok(bytes) => {
                    let held = unpack(&bytes);
                    tracing::debug!(%path, files = held, "log cache: read the log pack");
                    if let Some(disk) = &disk {
                        disk.mark(&marker);
                    }
                }
                Err(error) => tracing::debug!(%path, %error, "log cache: no log pack read"),
            },
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => tracing::debug!(%path, %error, "log cache: no log pack read"),
        }
    };
    let task = tokio::spawn(read);
    let pending = async move {
        let _ = task.await;
    }
    .boxed()
    .shared();
    *PENDING.lock().expect("not poisoned") = Some(pending);
}

/// Waits for the pack being read, if one is ([`prefetch`]), up to [`WAIT`]: a pack
/// not read by then is not waited for again.
pub(super) async fn wait() {
    let pending = PENDING.lock().expect("not poisoned").clone();
    if let Some(pending) = pending
        && tokio::time::timeout(WAIT, pending).await.is_err()
    {
        *PENDING.lock().expect("not poisoned") = None;
    }
}

/// Writes the log files this process holds, from each table's last checkpoint on, to
/// `path` of `store` (the state table's): what [`prefetch`] reads on the next new
/// machine. Only when this process looked for the pack (this machine had not seen it),
/// or read [`WRITE_AFTER_READS`] log files or more from the store; nothing when the cache is off or holds nothing. What
/// fails is a warning: the pack only spares reads.
pub async fn write(scope: &str, path: Path, store: impl FnOnce() -> Option<Arc<dyn ObjectStore>>) {
    let Some(disk) = installed_disk() else {
        return;
    };
    if !FETCHED.load(Ordering::Relaxed)
        && READ_FROM_STORE.load(Ordering::Relaxed) < WRITE_AFTER_READS
    {
        return;
    }
    let Some(bytes) = pack() else {
        return;
    };
    let Some(store) = store() else {
        return;
    };
    match store.put(&path, PutPayload::from(bytes)).await {
        Ok(_) => {
            if let Some(disk) = &disk {
                disk.mark(&fnv_key(&format!("{scope} {path}")));
            }
        }
        Err(error) => tracing::warn!(%path, %error, "log cache: could not write the log pack"),
    }
}

/// The disk of the installed cache: `None` when the cache is off, `Some(None)` when it
/// keeps nothing on disk.
fn installed_disk() -> Option<Option<Arc<super::disk::Disk>>> {
    DISK.get().cloned()
}

/// The files to pack: of each table, those held as its latest listing gives them (or
/// as this process wrote them), from its latest checkpoint listed on (a checkpoint only up to [`LARGEST_FILE`]),
/// up to [`CAPACITY`] in all, the newest of each table first.
fn pack() -> Option<Bytes> {
    let cache = cache();
    // The latest checkpoint listed of each table, by the table's part of the key.
    let mut checkpoints: HashMap<&str, u64> = HashMap::new();
    for key in cache.listed.keys() {
        if let Some((table, version, true)) = log_file(key) {
            let latest = checkpoints.entry(table).or_default();
            *latest = (*latest).max(version);
        }
    }
    let mut chosen: Vec<(&str, u64, &str)> = Vec::new();
    for key in cache.held.keys() {
        let Some((table, version, checkpoint)) = log_file(key) else {
            continue;
        };
        let from = checkpoints.get(table).copied().unwrap_or(0);
        let wanted = match checkpoint {
            true => version == from,
            false => version > from || (version == 0 && from == 0),
        };
        // As listed last, or written by this process and not listed since.
        let held = &cache.held[key];
        let agrees = cache
            .listed
            .get(key)
            .is_none_or(|listed| listed.e_tag == held.meta.e_tag);
        if wanted && agrees {
            chosen.push((table, version, key));
        }
    }
    chosen.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    let mut entries = Vec::new();
    let mut payload = Vec::new();
    for (_, _, key) in chosen {
        let held = &cache.held[key];
        let size = held.bytes.len() as u64;
        let Some(e_tag) = held.meta.e_tag.clone() else {
            continue;
        };
        if size > LARGEST_FILE || payload.len() as u64 + size > CAPACITY {
            continue;
        }
        entries.push(Entry {
            key: key.to_owned(),
            location: held.meta.location.to_string(),
            e_tag,
            size,
            last_modified: held.meta.last_modified,
        });
        payload.extend_from_slice(&held.bytes);
    }
    if entries.is_empty() {
        return None;
    }
    let header = serde_json::to_string(&entries).expect("entries serialise");
    let mut bytes = Vec::with_capacity(TAG.len() + header.len() + payload.len() + 2);
    bytes.extend_from_slice(TAG.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(header.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&payload);
    Some(Bytes::from(bytes))
}

/// Holds the files of `pack` in the cache (and on disk); returns how many. A pack
/// that is not one, or is cut short, holds nothing.
fn unpack(pack: &Bytes) -> usize {
    let Some(entries) = read_pack(pack) else {
        tracing::debug!("log cache: the log pack is damaged; ignored");
        return 0;
    };
    let disk = installed_disk().flatten();
    let count = entries.len();
    for (entry, bytes) in entries {
        let meta = ObjectMeta {
            location: Path::from(entry.location),
            last_modified: entry.last_modified,
            size: entry.size,
            e_tag: Some(entry.e_tag.clone()),
            version: None,
        };
        if let Some(disk) = &disk {
            disk.write(&entry.key, &entry.e_tag, &bytes);
        }
        cache().hold(entry.key, meta, bytes);
    }
    count
}

/// The files of `pack`, each with its bytes.
fn read_pack(pack: &Bytes) -> Option<Vec<(Entry, Bytes)>> {
    let rest = pack.strip_prefix(TAG.as_bytes())?.strip_prefix(b"\n")?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let entries: Vec<Entry> = serde_json::from_slice(&rest[..end]).ok()?;
    let mut at = pack.len() - rest.len() + end + 1;
    let mut files = Vec::with_capacity(entries.len());
    for entry in entries {
        let next = at.checked_add(usize::try_from(entry.size).ok()?)?;
        if next > pack.len() {
            return None;
        }
        let bytes = pack.slice(at..next);
        at = next;
        files.push((entry, bytes));
    }
    (at == pack.len()).then_some(files)
}

/// A log file's key: `(table, version, whether a checkpoint)`, where `table` is the
/// key up to `_delta_log/`. `None` for another file (a `_last_checkpoint`, a `.crc`).
fn log_file(key: &str) -> Option<(&str, u64, bool)> {
    let at = key.find("_delta_log/")?;
    let (table, name) = (&key[..at], &key[at + "_delta_log/".len()..]);
    let digits = name.get(..20)?;
    let version = digits.parse().ok()?;
    match &name[20..] {
        ".json" => Some((table, version, false)),
        rest if rest.starts_with(".checkpoint") && rest.ends_with(".parquet") => {
            Some((table, version, true))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(location: &str, e_tag: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(location),
            last_modified: chrono::Utc::now(),
            size,
            e_tag: Some(e_tag.to_owned()),
            version: None,
        }
    }

    /// Holds `bytes` as the file `name` of the table `table` of scope `scope`, as
    /// listed: a file read from the store.
    fn read_from_store(scope: &str, table: &str, name: &str, bytes: &'static str) {
        let location = format!("{table}/_delta_log/{name}");
        let key = format!("{scope} {location}");
        let meta = meta(&location, &format!("etag-{name}"), bytes.len() as u64);
        let mut cache = cache();
        cache.listed(key.clone(), &meta);
        cache.hold(key, meta, Bytes::from_static(bytes.as_bytes()));
    }

    fn commit(version: u64) -> String {
        format!("{version:020}.json")
    }

    /// A pack carries each table's files from its latest checkpoint on; what it
    /// carries comes back byte for byte, and only for the e-tag it was read with.
    #[test]
    fn a_pack_carries_each_tables_files_from_its_latest_checkpoint() {
        let scope = format!("memory://pack-{}", rand::random::<u64>());
        for v in 0..4 {
            read_from_store(&scope, "t/source", &commit(v), "source commit");
        }
        for v in 8..12 {
            read_from_store(&scope, "t/state", &commit(v), "state commit");
        }
        read_from_store(
            &scope,
            "t/state",
            &format!("{:020}.checkpoint.parquet", 9),
            "checkpoint",
        );
        // Written by this process, not listed since: packed as written.
        let written = format!("t/state/_delta_log/{}", commit(12));
        cache().hold(
            format!("{scope} {written}"),
            meta(&written, "etag-written", 7),
            Bytes::from_static(b"written"),
        );
        // Held, but listed since under another e-tag: not packed.
        let replaced = format!("t/source/_delta_log/{}", commit(4));
        read_from_store(&scope, "t/source", &commit(4), "old");
        cache().listed(format!("{scope} {replaced}"), &meta(&replaced, "new", 3));
        let pack = pack().expect("something to pack");
        let files = read_pack(&pack).expect("a pack");
        let mut names: Vec<String> = files
            .iter()
            .filter(|(e, _)| e.key.starts_with(&format!("{scope} ")))
            .map(|(e, _)| e.location.clone())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "t/source/_delta_log/00000000000000000000.json",
                "t/source/_delta_log/00000000000000000001.json",
                "t/source/_delta_log/00000000000000000002.json",
                "t/source/_delta_log/00000000000000000003.json",
                "t/state/_delta_log/00000000000000000009.checkpoint.parquet",
                "t/state/_delta_log/00000000000000000010.json",
                "t/state/_delta_log/00000000000000000011.json",
                "t/state/_delta_log/00000000000000000012.json",
            ]
        );
        for (entry, bytes) in &files {
            assert_eq!(cache().held[&entry.key].bytes, *bytes);
        }

        // A new machine: nothing held. The pack's files are served once listed with
        // the e-tags they were packed with, and not under another.
        let key = format!("{scope} t/source/_delta_log/{}", commit(2));
        cache().forget(&key);
        assert!(cache().fresh(&key).is_none());
        unpack(&pack);
        assert!(cache().fresh(&key).is_none(), "not listed yet");
        let listed = meta("t/source/_delta_log/x", &format!("etag-{}", commit(2)), 13);
        cache().listed(key.clone(), &listed);
        assert_eq!(
            cache().fresh(&key).unwrap().1,
            Bytes::from_static(b"source commit")
        );
        cache().listed(key.clone(), &meta("t/source/_delta_log/x", "another", 13));
        assert!(cache().fresh(&key).is_none(), "a table created again");
    }

    /// A pack cut short, or something else at its path, holds nothing.
    #[test]
    fn a_damaged_pack_is_ignored() {
        let scope = format!("memory://damaged-{}", rand::random::<u64>());
        read_from_store(&scope, "t/source", &commit(0), "zero");
        let pack = pack().unwrap();
        assert!(read_pack(&pack.slice(..pack.len() - 1)).is_none());
        assert!(read_pack(&Bytes::from_static(b"PAR1 not a pack")).is_none());
        let mut longer = pack.to_vec();
        longer.push(b'x');
        assert!(read_pack(&Bytes::from(longer)).is_none());
        assert_eq!(unpack(&Bytes::from_static(b"latefill log pack 1\n[")), 0);
    }

    #[test]
    fn log_files_are_told_by_name() {
        assert_eq!(
            log_file("s3://b t/_delta_log/00000000000000000012.json"),
            Some(("s3://b t/", 12, false))
        );
        assert_eq!(
            log_file("s3://b t/_delta_log/00000000000000000010.checkpoint.parquet"),
            Some(("s3://b t/", 10, true))
        );
        assert_eq!(log_file("s3://b t/_delta_log/_last_checkpoint"), None);
        assert_eq!(
            log_file("s3://b t/_delta_log/00000000000000000012.crc"),
            None
        );
        assert_eq!(
            location("devices daily/x").as_ref(),
            "_latefill_log_pack/devices_daily_x"
        );
    }
}
