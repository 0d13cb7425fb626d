//! What the executor keeps between the calls of one program: the tables it loaded,
//! each target's chain of this program's commits, and the checkpoints being written
//! in the background. A value the caller owns and passes down, never a process
//! global: two engines (or two tests) in one process share nothing unless they are
//! given the same session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use latefill_core::storage::Tables;
use url::Url;

use crate::group::Commits;

/// The executor's state between calls; cheap to clone (the clones share it).
/// [`run_partition`](crate::run_partition) runs in a session of its own unless given
/// one ([`RunPartition::with_session`](crate::RunPartition::with_session)).
#[derive(Clone, Default)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tables: Tables,
    /// This session's commits to each target, made one at a time, and the changes
    /// waiting for them.
    commits: Mutex<HashMap<Url, Arc<Commits>>>,
    /// The checkpoint tasks of this session, by target: each waits for the one
    /// before it, so that a target's checkpoints land in order.
    checkpoints: Mutex<HashMap<Url, Pending>>,
    /// One gate a target, held by the run that creates it.
    creations: Mutex<HashMap<Url, Arc<tokio::sync::Mutex<bool>>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tables", &self.inner.tables)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session that keeps nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A session keeping its tables in `tables` (shared with whoever else holds it).
    pub fn with_tables(tables: Tables) -> Self {
        Session {
            inner: Arc::new(Inner {
                tables,
                ..Inner::default()
            }),
        }
    }

    /// The tables this session keeps.
    pub fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    /// This session's commits to the target at `url`: the chain, and the changes
    /// waiting for it.
    pub(crate) fn commits(&self, url: &Url) -> Arc<Commits> {
        self.inner
            .commits
            .lock()
            .expect("not poisoned")
            .entry(url.clone())
            .or_insert_with(|| Arc::new(Commits::for_target(url)))
            .clone()
    }

    /// The gate of the target at `url` that a run finding no target holds while it
    /// creates it: the session's other runs that find none wait for it, then write to
    /// the table it created, instead of all creating it at once and all but one
    /// losing the race for its first version (5 of 8 runs of a new backfill did).
    /// It holds whether a run went through it before: the first run to take it has
    /// just found no target, and need not look again.
    pub(crate) fn creation(&self, url: &Url) -> Arc<tokio::sync::Mutex<bool>> {
        self.inner
            .creations
            .lock()
            .expect("not poisoned")
            .entry(url.clone())
            .or_default()
            .clone()
    }

    /// Replaces the checkpoint task pending for `url` with the one `next` makes of it
    /// (which waits for it), in one step: a target's checkpoints land in order.
    pub(crate) fn chain_checkpoint(
        &self,
        url: &Url,
        next: impl FnOnce(Option<Pending>) -> Pending,
    ) {
        let mut tasks = self.inner.checkpoints.lock().expect("not poisoned");
        let previous = tasks.remove(url);
        tasks.insert(url.clone(), next(previous));
    }

    /// Waits for the checkpoints this session's runs left to write in the background
    /// ([`RunPartition::with_checkpoint_in_background`](crate::RunPartition::with_checkpoint_in_background)).
    ///
    /// The caller has no more runs to make: a checkpoint not yet written is not
    /// followed by loading the target from it (on S3, a third of the checkpoint's
    /// time). A later run loads it when it needs to, as after any other writer's
    /// checkpoint.
    pub async fn checkpoints_written(&self) {
        let pending: Vec<Pending> = self
            .inner
            .checkpoints
            .lock()
            .expect("not poisoned")
            .drain()
            .map(|(_, pending)| pending)
            .collect();
        for Pending { task, reload } in pending {
            reload.store(false, Ordering::Relaxed);
            // A panic in a checkpoint is the task's; the commits have landed.
            let _ = task.await;
        }
    }
}

/// A checkpoint written in a task of its own.
pub(crate) struct Pending {
    pub(crate) task: tokio::task::JoinHandle<()>,
    /// Whether the target is to be loaded from the checkpoint once it is written;
    /// cleared by [`Session::checkpoints_written`], whose caller has no more runs to
    /// make.
    pub(crate) reload: Arc<AtomicBool>,
}
