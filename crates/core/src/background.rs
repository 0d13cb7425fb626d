//! Work a call leaves running after it returns, which the process awaits before its
//! runtime ends: today, a state table's checkpoint, written while the run that
//! committed it goes on.
//!
//! A task cut short when the runtime shuts down writes nothing (the next reader then
//! replays a few more commits), but a Delta kernel snapshot build still in flight
//! there panics on its blocking thread. So the `latefill` binary and the Python
//! package await [`settle`] after every command; a program that embeds latefill and
//! ends its runtime right after a call should too.

use std::future::Future;
use std::sync::{LazyLock, Mutex};

use tokio::task::JoinHandle;

static TASKS: LazyLock<Mutex<Vec<JoinHandle<()>>>> = LazyLock::new(Mutex::default);

/// Runs `work` in a task of its own, which [`settle`] awaits.
pub fn spawn(work: impl Future<Output = ()> + Send + 'static) {
    let task = tokio::spawn(work);
    let mut tasks = TASKS.lock().expect("not poisoned");
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}

/// Waits for every task [`spawn`] started, those they start included.
pub async fn settle() {
    loop {
        let tasks = std::mem::take(&mut *TASKS.lock().expect("not poisoned"));
        if tasks.is_empty() {
            return;
        }
        for task in tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "background work ended abnormally");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn settle_waits_for_every_task_and_the_tasks_they_start() {
        let done = Arc::new(AtomicUsize::new(0));
        let inner = done.clone();
        spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let innermost = inner.clone();
            spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                innermost.fetch_add(1, Ordering::SeqCst);
            });
            inner.fetch_add(1, Ordering::SeqCst);
        });
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 2);
    }
}
