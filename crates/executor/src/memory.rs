//! The transform's memory: the pool its DataFusion session reserves from, bounded by
//! the pipeline's memory limit (operators spill beyond it), and the most it held.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deltalake::datafusion::common::Result;
use deltalake::datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
    UnboundedMemoryPool,
};

/// A memory pool that remembers the most it had reserved at once; otherwise the
/// pool it wraps.
#[derive(Debug)]
pub(crate) struct PeakPool {
    inner: Arc<dyn MemoryPool>,
    peak: AtomicUsize,
}

impl PeakPool {
    /// The pool of a run: at most `limit` bytes, shared fairly among the operators
    /// that can spill (so that two streams of an aggregation both spill instead of
    /// the first starving the second), naming the largest consumers when a
    /// reservation cannot be met; no bound without a limit.
    pub(crate) fn new(limit: Option<u64>) -> Self {
        let inner: Arc<dyn MemoryPool> = match limit {
            None => Arc::new(UnboundedMemoryPool::default()),
            Some(limit) => Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(usize::try_from(limit).unwrap_or(usize::MAX)),
                std::num::NonZeroUsize::new(3).expect("3 is not 0"),
            )),
        };
        PeakPool {
            inner,
            peak: AtomicUsize::new(0),
        }
    }

    /// The most bytes reserved at once so far.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed) as u64
    }

    fn note(&self) {
        self.peak
            .fetch_max(self.inner.reserved(), Ordering::Relaxed);
    }
}

impl std::fmt::Display for PeakPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl MemoryPool for PeakPool {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.note();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.inner.try_grow(reservation, additional)?;
        self.note();
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// The most bytes the session `ctx` reserved at once, when its pool is a
/// [`PeakPool`].
pub(crate) fn peak_of(ctx: &deltalake::datafusion::prelude::SessionContext) -> Option<u64> {
    let pool = ctx.runtime_env().memory_pool.clone();
    (pool.as_ref() as &dyn MemoryPool)
        .downcast_ref::<PeakPool>()
        .map(PeakPool::peak)
}
