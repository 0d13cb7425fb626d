//! The log cache's copy on disk, so that the next process on this machine does not
//! read again the log files this one read or wrote.
//!
//! A daily run is a process a day. Without this, each one reads every commit of the
//! source since the source's last checkpoint (which latefill does not write: it does
//! not own the source), so its cost grows with every day since. With it, a run on a
//! machine that ran the day before reads only the commits written since.
//!
//! A file is kept under `<root>/<table>/<name>.<e-tag>`: `<table>` is a hash of the
//! store and the table's path, `<name>` the file's name in `_delta_log/`, `<e-tag>`
//! a hash of the e-tag the store gave it. It is served only for a listing that gives
//! that e-tag and its exact size, so a table created again under the same path (new
//! e-tags) is read afresh, and a file cut short (a full disk) is never served. Files
//! are written whole under another name and renamed, so a reader never sees half of
//! one, and two processes writing the same file write the same bytes.
//!
//! Everything here is best effort: a directory that cannot be written turns into a
//! read from the store, never into an error.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::Bytes;

/// The most bytes kept on disk; beyond it the oldest files go, down to three quarters.
const CAPACITY: u64 = 256 * 1024 * 1024;

/// How often the cache is measured against its capacity: a walk of every file, which
/// a process a minute on a full cache should not pay each time.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The file whose modification time says when the cache was last measured.
const PRUNED_MARKER: &str = ".pruned";

/// Where the log files are kept on disk.
#[derive(Debug)]
pub(crate) struct Disk {
    root: PathBuf,
    capacity: u64,
    pruned: OnceLock<()>,
}

impl Disk {
    /// The directory of `LATEFILL_CACHE_DIR`, or of the user's cache directory
    /// (`~/.cache/latefill` on Linux), followed by `log`. None when
    /// `LATEFILL_LOG_CACHE` is `memory` or `off`, or there is no such directory.
    pub(crate) fn from_env() -> Option<Disk> {
        if std::env::var("LATEFILL_LOG_CACHE").is_ok_and(|v| v == "memory" || v == "off") {
            return None;
        }
        let root = match std::env::var_os("LATEFILL_CACHE_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs::cache_dir()?.join("latefill"),
        };
        Some(Disk::at(root.join("log")))
    }

    pub(crate) fn at(root: PathBuf) -> Disk {
        Disk {
            root,
            capacity: CAPACITY,
            pruned: OnceLock::new(),
        }
    }

    /// The file for `key` ("scope path") with `e_tag`; None for a path that is not
    /// in a `_delta_log/`.
    fn file(&self, key: &str, e_tag: &str) -> Option<PathBuf> {
        let (table, name) = key.split_once("_delta_log/")?;
        let name = name.replace('/', "%");
        Some(
            self.root
                .join(format!("{:016x}", fnv1a(table.as_bytes())))
                .join(format!("{name}.{:016x}", fnv1a(e_tag.as_bytes()))),
        )
    }

    /// The bytes kept for `key` with `e_tag`, if they are exactly `size` long.
    pub(crate) fn read(&self, key: &str, e_tag: &str, size: u64) -> Option<Bytes> {
        let file = self.file(key, e_tag)?;
        let bytes = fs::read(file).ok()?;
        (bytes.len() as u64 == size).then(|| Bytes::from(bytes))
    }

    /// Keeps `bytes` for `key` with `e_tag`.
    pub(crate) fn write(&self, key: &str, e_tag: &str, bytes: &[u8]) {
        let Some(file) = self.file(key, e_tag) else {
            return;
        };
        if let Err(e) = write_whole(&file, bytes) {
            tracing::debug!(file = %file.display(), error = %e, "log cache: not kept on disk");
            return;
        }
        self.pruned.get_or_init(|| {
            if self.prune_due() {
                self.prune();
            }
        });
    }

    /// Whether the cache was last measured [`PRUNE_EVERY`] ago or more (or never),
    /// in which case the marker is renewed now: the processes of the next hour skip it.
    fn prune_due(&self) -> bool {
        let marker = self.root.join(PRUNED_MARKER);
        let fresh = fs::metadata(&marker)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age < PRUNE_EVERY);
        if fresh {
            return false;
        }
        let _ = fs::write(&marker, b"");
        true
    }

    /// Removes the oldest files while the cache holds more than its capacity. At a
    /// process's first write, at most once an hour on the machine.
    fn prune(&self) {
        let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        let Ok(tables) = fs::read_dir(&self.root) else {
            return;
        };
        for table in tables.flatten() {
            let Ok(entries) = fs::read_dir(table.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    files.push((written, meta.len(), entry.path()));
                }
            }
        }
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        if total <= self.capacity {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.capacity / 4 * 3 {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

impl Disk {
    /// Notes `name` (a log pack this machine read or wrote: see [`super::pack`]).
    pub(crate) fn mark(&self, name: &str) {
        let file = self.root.join("packs").join(name);
        if let Err(e) = write_whole(&file, b"") {
            tracing::debug!(file = %file.display(), error = %e, "log cache: no mark kept");
        }
    }

    /// Whether `name` was noted ([`Disk::mark`]).
    pub(crate) fn marked(&self, name: &str) -> bool {
        self.root.join("packs").join(name).is_file()
    }
}

/// Writes `bytes` to a file of its own beside `file`, then renames it to `file`.
fn write_whole(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file
        .parent()
        .expect("a cache file is in a table's directory");
    fs::create_dir_all(dir)?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
    temporary.write_all(bytes)?;
    temporary.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// The 64-bit FNV-1a hash: stable across builds and platforms, unlike std's hasher.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "s3://bucket t/_delta_log/00000000000000000003.json";

    #[test]
    fn a_file_is_served_for_its_e_tag_and_size_only() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::at(dir.path().to_owned());
        disk.write(KEY, "\"e1\"", b"commit");
        assert_eq!(disk.read(KEY, "\"e1\"", 6).as_deref(), Some(&b"commit"[..]));
        assert_eq!(disk.read(KEY, "\"e2\"", 6), None, "another e-tag");
        assert_eq!(disk.read(KEY, "\"e1\"", 7), None, "another size");
        let other = "s3://other t/_delta_log/00000000000000000003.json";
        assert_eq!(disk.read(other, "\"e1\"", 6), None, "another bucket");
    }

    #[test]
    fn a_file_cut_short_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::at(dir.path().to_owned());
        disk.write(KEY, "\"e1\"", b"commit");
        let file = disk.file(KEY, "\"e1\"").unwrap();
        fs::write(&file, b"comm").unwrap();
        assert_eq!(disk.read(KEY, "\"e1\"", 6), None);
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("a-file");
        fs::write(&blocked, b"").unwrap();
        let disk = Disk::at(blocked.join("log"));
        disk.write(KEY, "\"e1\"", b"commit");
        assert_eq!(disk.read(KEY, "\"e1\"", 6), None);
    }

    #[test]
    fn the_cache_is_measured_at_most_once_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::at(dir.path().to_owned());
        fs::create_dir_all(dir.path()).unwrap();
        assert!(disk.prune_due(), "never measured");
        assert!(!disk.prune_due(), "measured just now");
        let marker = fs::File::options()
            .write(true)
            .open(dir.path().join(PRUNED_MARKER))
            .unwrap();
        marker
            .set_modified(SystemTime::now() - PRUNE_EVERY - std::time::Duration::from_secs(1))
            .unwrap();
        assert!(disk.prune_due(), "measured over an hour ago");
    }

    #[test]
    fn the_oldest_files_go_beyond_the_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk {
            capacity: 3_000,
            ..Disk::at(dir.path().to_owned())
        };
        let big = vec![0u8; 1_001];
        let keys: Vec<String> = (0..4)
            .map(|v| format!("s3://b t/_delta_log/{v:020}.checkpoint.parquet"))
            .collect();
        for (age, key) in keys.iter().enumerate() {
            // Written one after another, as earlier processes would have.
            let file = disk.file(key, "e").unwrap();
            write_whole(&file, &big).unwrap();
            let written = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(age as u64);
            fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(written)
                .unwrap();
        }
        disk.prune();
        let kept: Vec<bool> = keys
            .iter()
            .map(|k| disk.read(k, "e", big.len() as u64).is_some())
            .collect();
        assert_eq!(kept, [false, false, true, true]);
    }
}
