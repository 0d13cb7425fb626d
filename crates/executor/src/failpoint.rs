//! Test-only failpoints, compiled in with the `failpoints` feature only (the tests'):
//! `LATEFILL_FAILPOINT=<name>` makes the process abort (as a
//! SIGKILL would leave it: no cleanup, no unwinding) when it reaches that step.
//!
//! Steps, in order: `after-claim`, `mid-write` (a data file of the target partition
//! exists but the commit has not landed, or at the latest right after it lands),
//! `after-commit` (the target commit landed, the state is not completed yet),
//! `after-complete`.
//!
//! `LATEFILL_FAILPOINT=pause:<name>` instead pauses the process at a [`pausepoint`]
//! until it receives SIGINT or SIGTERM, so that a test can signal it at exactly that
//! step. Steps: `handed-out` (the late partitions are claimed, the plan file is not
//! written yet).

use std::path::PathBuf;

/// The environment variable naming the failpoint.
pub const FAILPOINT_ENV: &str = "LATEFILL_FAILPOINT";

/// Whether the failpoint `name` is armed; never without the `failpoints` feature.
fn armed(name: &str) -> bool {
    cfg!(feature = "failpoints") && std::env::var(FAILPOINT_ENV).is_ok_and(|v| v == name)
}

/// Aborts the process if the failpoint `name` is armed.
pub fn failpoint(name: &str) {
    if armed(name) {
        eprintln!("latefill: failpoint {name} reached, aborting");
        std::process::abort();
    }
}

/// If `pause:<name>` is armed, says so on stderr and waits for SIGINT or SIGTERM,
/// then goes on and returns `true` (the program's own signal handling sees the same
/// signal, maybe a moment later: a caller that depends on it waits for it).
pub async fn pausepoint(name: &str) -> bool {
    if !armed(&format!("pause:{name}")) {
        return false;
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("a signal handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a signal handler");
    eprintln!("latefill: paused at {name} until a signal");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    true
}

/// While the returned guard lives, aborts the process as soon as a file that was not
/// there before appears in `dir` (the `mid-write` failpoint). Does nothing unless armed.
pub(crate) fn abort_on_new_file(dir: Option<PathBuf>) -> Option<tokio::task::JoinHandle<()>> {
    if !armed("mid-write") {
        return None;
    }
    let dir = dir?;
    let listing = |dir: &PathBuf| -> std::collections::BTreeSet<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default()
    };
    let before = listing(&dir);
    Some(tokio::spawn(async move {
        loop {
            if listing(&dir).difference(&before).next().is_some() {
                eprintln!("latefill: failpoint mid-write reached, aborting");
                std::process::abort();
            }
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    }))
}
