//! Backing off from a target version another writer took, inside delta-rs's commit
//! loop.
//!
//! delta-rs's commit loop, when another writer took the version it put, lists the log,
//! checks the new commits for conflicts and puts at the next version straight away.
//! Writers that lost to the same commit therefore all come back together, and all but
//! one lose again: 16 `backfill` workers on one target on S3 (`scripts/fleet.sh`)
//! lost 7 of every 8 target commit puts, each loss a listing, the new commits and a
//! put again (39 of their 61 requests a partition). [`Backoff`] wraps the target's log
//! store for that loop and, after a put that lost, waits a random time up to
//! `2^lost` (at most 16) times what the lost attempt took before the loop goes on
//! ("full jitter", as the state table's transitions do): the writers spread over as
//! many commit cycles as there are of them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deltalake::DeltaResult;
use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use object_store::ObjectStore;
use object_store::path::Path;
use rand::RngExt;
use url::Url;
use uuid::Uuid;

/// A log store that waits after each commit put another writer won (see the module).
pub(crate) struct Backoff {
    inner: LogStoreRef,
    /// Puts lost so far.
    lost: AtomicU32,
    /// When the attempt under way started: the wrapper's creation, or the end of the
    /// last put and its wait.
    attempt_started: Mutex<Instant>,
    /// The size of the commit file that landed, once one has (as written: delta-rs
    /// counts its retries in it, so it is not the size it first prepared).
    landed_size: Mutex<Option<u64>>,
}

impl Backoff {
    /// Wraps `inner` for one commit.
    pub(crate) fn wrap(inner: LogStoreRef) -> Arc<Backoff> {
        Arc::new(Backoff {
            inner,
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

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("inner", &self.inner.name())
            .field("lost", &self.lost.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl LogStore for Backoff {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<Bytes>> {
        self.inner.read_commit_entry(version).await
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
        self.inner.get_latest_version(start_version).await
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
    use super::*;

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
