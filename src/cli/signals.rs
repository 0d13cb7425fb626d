//! SIGINT and SIGTERM, as schedulers stop tasks: a first signal lets the work under
//! way finish and starts no more; a second gives back every claim held and exits at
//! once.

use crate::cli::exit::Interrupted;
use crate::engine::{Engine, RunControl};

/// What a command says at each signal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Words {
    /// At the first signal.
    first: &'static str,
    /// What was abandoned at the second, given the number of claims given back.
    abandoned: fn(usize) -> String,
}

/// `run` and `detect`: one partition at a time.
pub(crate) const RUN: Words = Words {
    first: "interrupt: finishing the partition under way, starting no other (interrupt again to abandon it)",
    abandoned: |n| format!("abandoned the run and released its {n} claim(s)"),
};

/// `backfill`: several partitions at a time.
pub(crate) const BACKFILL: Words = Words {
    first: "interrupt: no new partitions; finishing the running ones (interrupt again to abandon them)",
    abandoned: |n| format!("abandoned {n} running partition(s) and released their claims"),
};

/// Awaits `work` (a run of `engine`) while handling SIGINT and SIGTERM, as
/// schedulers stop tasks: the first signal lets the partitions under way finish and
/// starts no other ([`RunControl::stop`]); a second one gives back every claim the run
/// holds ([`RunControl::held`]) and returns [`Interrupted`] at once, abandoning the
/// work.
pub(crate) async fn until_signalled<T>(
    engine: &Engine,
    control: &RunControl,
    words: Words,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    let mut work = std::pin::pin!(work);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        // The signal first: a signal that wakes the work too (a test's pause point)
        // is seen before the work goes on.
        tokio::select! {
            biased;
            _ = async { tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = terminate.recv() => {} } } => {
                if !control.stop() {
                    eprintln!("{}", words.first);
                    continue;
                }
                let held = control.held();
                for partition in &held {
                    if let Err(e) = engine.state().release(partition, engine.run_id(), "interrupted").await {
                        tracing::warn!(%partition, error = %e, "could not release the claim; it expires with its lease");
                    }
                }
                return Err(Interrupted((words.abandoned)(held.len())).into());
            }
            done = &mut work => return Ok(done),
        }
    }
}
