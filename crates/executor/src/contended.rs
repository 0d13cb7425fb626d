//! A target's log as delta-rs's commit loop sees it where other writers commit too.
//!
//! delta-rs's commit loop, when the target moved since the version a run read, reads
//! the commits since one after another to check them for conflicts; and when another
//! writer takes the version it puts, it does so again and puts at the next version
//! straight away. On an object store shared by a fleet of workers that is a request
//! time per commit to check, and writers that lost to the same commit all come back
//! together, all but one to lose again: 16 `backfill` workers on one target on S3
//! (`scripts/fleet.sh`) lost 7 of every 8 target commit puts, each loss a listing, the
//! new commits and a put again (39 of their 61 requests a partition).
//!
//! [`Contended`] wraps the target's log store for that loop:
//! - once the loop has listed how far the log goes, it reads the commits it is about
//!   to check side by side (at most [`PREFETCH`] of them), so that checking them waits
//!   for one request, not one each;
//! - after a put that lost, it waits a random time up to `2^lost` (at most 16) times
//!   what the lost attempt took before the loop goes on ("full jitter", as the state
//!   table's transitions do): the writers spread over as many commit cycles as there
//!   are of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deltalake::DeltaResult;
use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use rand::RngExt;
use url::Url;
use uuid::Uuid;

/// At most how many commits ahead of the version read are read side by side.
const PREFETCH: Version = 64;

/// How many of them are read at once.
const PREFETCH_AT_ONCE: usize = 16;

/// A target's log store for one commit through delta-rs's commit loop (see the module).
pub(crate) struct Contended {
    inner: LogStoreRef,
    /// Commits read ahead of the loop, by version.
    read_ahead: Mutex<HashMap<Version, Bytes>>,
    /// Puts lost so far.
    lost: AtomicU32,
    /// When the attempt under way started: the wrapper's creation, or the end of the
    /// last put and its wait.
    attempt_started: Mutex<Instant>,
    /// The size of the commit file that landed, once one has (as written: delta-rs
    /// counts its retries in it, so it is not the size it first prepared).
    landed_size: Mutex<Option<u64>>,
}

impl Contended {
    /// Wraps `inner` for one commit.
    pub(crate) fn wrap(inner: LogStoreRef) -> Arc<Contended> {
        Arc::new(Contended {
            inner,
            read_ahead: Mutex::new(HashMap::new()),
            lost: AtomicU32::new(0),
            attempt_started: Mutex::new(Instant::now()),
            landed_size: Mutex::new(None),
        })
    }

    /// The size of the commit file that landed, if one did and was written as bytes.
    pub(crate) fn landed_size(&self) -> Option<u64> {
        *self.landed_size.lock().expect("not poisoned")
    }
}

/// How long to wait after the `lost`-th lost put (from 0), whose attempt took
/// `attempt`: a random time up to `2^lost` (at most 16) times it, the attempt counted
/// between a millisecond (a local disk) and two seconds.
pub(crate) fn jitter(lost: u32, attempt: Duration) -> Duration {
    let cycle = attempt.clamp(Duration::from_millis(1), Duration::from_secs(2));
    let spread = cycle * 2u32.pow(lost.min(4));
    spread.mul_f64(rand::rng().random_range(0.0..=1.0))
}

impl std::fmt::Debug for Contended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contended")
            .field("inner", &self.inner.name())
            .field("lost", &self.lost.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl LogStore for Contended {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<Bytes>> {
        let ahead = self
            .read_ahead
            .lock()
            .expect("not poisoned")
            .remove(&version);
        match ahead {
            Some(bytes) => Ok(Some(bytes)),
            None => self.inner.read_commit_entry(version).await,
        }
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        let size = match &commit_or_bytes {
            CommitOrBytes::LogBytes(bytes) => Some(bytes.len() as u64),
            CommitOrBytes::TmpCommit(_) => None,
        };
        let result = self
            .inner
            .write_commit_entry(version, commit_or_bytes, operation_id)
            .await;
        if result.is_ok() {
            *self.landed_size.lock().expect("not poisoned") = size;
        }
        if let Err(TransactionError::VersionAlreadyExists(_)) = &result {
            let lost = self.lost.fetch_add(1, Ordering::Relaxed);
            let took = self.attempt_started.lock().expect("not poisoned").elapsed();
            let wait = jitter(lost, took);
            tracing::debug!(table = %self.inner.root_url(), version, lost = lost + 1, wait_ms = wait.as_millis() as u64, "target: another writer took the version; waiting before the next attempt");
            tokio::time::sleep(wait).await;
        }
        *self.attempt_started.lock().expect("not poisoned") = Instant::now();
        result
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner
            .abort_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        let latest = self.inner.get_latest_version(start_version).await?;
        // The commits the loop checks next, read side by side. One that cannot be
        // read now is read again by the loop, which reports what goes wrong.
        let ahead: Vec<Version> = (start_version + 1..=latest.min(start_version + PREFETCH))
            .filter(|v| {
                !self
                    .read_ahead
                    .lock()
                    .expect("not poisoned")
                    .contains_key(v)
            })
            .collect();
        if ahead.len() > 1 {
            let read: Vec<(Version, DeltaResult<Option<Bytes>>)> = futures::stream::iter(ahead)
                .map(|v| async move { (v, self.inner.read_commit_entry(v).await) })
                .buffer_unordered(PREFETCH_AT_ONCE)
                .collect()
                .await;
            let mut held = self.read_ahead.lock().expect("not poisoned");
            for (version, bytes) in read {
                if let Ok(Some(bytes)) = bytes {
                    held.insert(version, bytes);
                }
            }
        }
        Ok(latest)
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn engine(&self, operation_id: Option<Uuid>) -> Arc<dyn delta_kernel::Engine> {
        self.inner.engine(operation_id)
    }

    fn to_uri(&self, location: &Path) -> String {
        self.inner.to_uri(location)
    }

    fn root_url(&self) -> &Url {
        self.inner.root_url()
    }

    fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    fn transaction_url(&self, operation_id: Option<Uuid>) -> DeltaResult<Url> {
        self.inner.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> DeltaResult<bool> {
        self.inner.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }

    fn object_store_url(&self) -> deltalake::datafusion::execution::object_store::ObjectStoreUrl {
        self.inner.object_store_url()
    }
}

#[cfg(test)]
mod tests {
    use latefill_testkit::{Workspace, open};

    use super::*;

    /// Once the loop has listed how far the log goes, the commits after the version it
    /// read are already in memory: reading them asks the store for nothing (here,
    /// their files are gone and they still read, as they were).
    #[tokio::test]
    async fn the_commits_to_check_are_read_ahead_once_the_log_is_listed() {
        let ws = Workspace::new();
        for (i, day) in ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
            .iter()
            .enumerate()
        {
            ws.generate(day, 10, i as u64).await;
        }
        let table = open(&ws.source_path()).await;
        let log = Contended::wrap(table.log_store());
        let commit = |v: Version| ws.source_path().join(format!("_delta_log/{v:020}.json"));
        let written: Vec<Vec<u8>> = (1..=3).map(|v| std::fs::read(commit(v)).unwrap()).collect();

        assert_eq!(log.get_latest_version(0).await.unwrap(), 3);
        for v in 1..=3 {
            std::fs::remove_file(commit(v)).unwrap();
        }
        for v in 1..=3 {
            let read = log.read_commit_entry(v).await.unwrap().expect("read ahead");
            assert_eq!(read.as_ref(), written[v as usize - 1].as_slice(), "{v}");
        }
        // Read ahead once: a second read goes to the store.
        assert_eq!(log.read_commit_entry(1).await.unwrap(), None);
    }

    #[test]
    fn the_wait_grows_with_the_puts_lost_and_stays_within_sixteen_attempts() {
        let attempt = Duration::from_millis(100);
        for lost in 0..8 {
            let most = attempt * 2u32.pow(lost.min(4));
            for _ in 0..50 {
                assert!(jitter(lost, attempt) <= most);
            }
        }
        // Spread, not fixed: 50 draws are not all the same.
        let draws: std::collections::BTreeSet<_> = (0..50).map(|_| jitter(3, attempt)).collect();
        assert!(draws.len() > 1);
        // A local disk's attempt of microseconds still waits up to a millisecond, and
        // a stuck one at most 32 seconds.
        assert!(jitter(0, Duration::from_micros(5)) <= Duration::from_millis(1));
        assert!(jitter(9, Duration::from_secs(60)) <= Duration::from_secs(32));
    }
}
