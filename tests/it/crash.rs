//! Crash safety: a process killed at any step leaves nothing a later run cannot
//! finish, with nothing lost or written twice.

use std::process::Command;

use latefill::executor::FAILPOINT_ENV;

use crate::common::*;

const STEPS: [&str; 4] = ["after-claim", "mid-write", "after-commit", "after-complete"];

fn run_with_failpoint(ws: &Workspace, step: &str, args: &[&str]) -> std::process::Output {
    let mut full = vec!["run", "--config", ws.config.to_str().unwrap()];
    full.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_latefill"))
        .args(&full)
        .env(FAILPOINT_ENV, step)
        .current_dir(ws.dir.path())
        .output()
        .unwrap()
}

/// Asserts that `killed` was aborted by the failpoint `step`.
fn assert_aborted_at(step: &str, killed: &std::process::Output) {
    assert_eq!(
        killed.status.code(),
        None,
        "{step}: the process was aborted"
    );
    assert!(
        stderr(killed).contains(&format!("failpoint {step}")),
        "{step}: {}",
        stderr(killed)
    );
}

#[tokio::test]
async fn a_run_killed_at_any_step_is_finished_by_the_next_run() {
    for step in STEPS {
        let ws = Workspace::new();
        ws.generate("2024-01-01", 1_000, 1).await;
        ws.generate("2024-01-02", 1_000, 2).await;
        let ok = ws.run_cli(&["--date", "2024-01-01"]);
        assert!(ok.status.success(), "{}", stderr(&ok));
        let late_version = ws.generate("2024-01-01", 300, 3).await;

        // Killed while processing 2024-01-02 and backfilling the late 2024-01-01.
        let killed =
            run_with_failpoint(&ws, step, &["--date", "2024-01-02", "--lease-seconds", "1"]);
        assert_aborted_at(step, &killed);
        let target_after_crash = table_version(&ws.target_path()).await;

        // The crashed run's lease expires; the next run finishes the work.
        std::thread::sleep(std::time::Duration::from_millis(1_200));
        let out = ws.run_cli(&["--date", "2024-01-02", "--output", "json"]);
        assert!(out.status.success(), "{step}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();

        if step == "after-commit" {
            // The commit landed before the crash: recognised through its txn.
            assert_eq!(json["recovered"], true, "{step}: {json}");
            assert_eq!(
                json["target_version"],
                target_after_crash.unwrap(),
                "{step}: not rewritten"
            );
        }
        for (date, batches) in [
            ("2024-01-01", vec![(1_000, 1), (300, 3)]),
            ("2024-01-02", vec![(1_000, 2)]),
        ] {
            assert_eq!(
                target_counts(&ws.target_path(), date).await,
                expected_counts(date, &batches),
                "{step}: {date}"
            );
        }
        let state = latefill::Engine::new(ws.pipeline()).status().await.unwrap();
        for row in &state {
            assert_eq!(row.status, "processed", "{step}: {row:?}");
            assert_eq!(
                row.source_version,
                Some(late_version.into()),
                "{step}: {row:?}"
            );
            assert!(!row.late, "{step}: {row:?}");
        }
    }
}

/// The batched path: a `backfill` claims partitions a batch at a time and records
/// their completions a batch at a time, so a process killed at any step can leave
/// partitions claimed and not started, and target commits whose completions were
/// never recorded. After the leases expire, one more backfill finishes everything,
/// recognising the commits that landed by their txn instead of rewriting them.
#[tokio::test]
async fn a_batched_backfill_killed_at_any_step_is_finished_by_the_next_one() {
    let days: Vec<String> = (1..=6).map(|d| format!("2024-02-{d:02}")).collect();
    for step in STEPS {
        let ws = Workspace::new();
        for (i, d) in days.iter().enumerate() {
            ws.generate(d, 500, i as u64).await;
        }
        let config = ws.config.to_str().unwrap();
        let range = ["--from", days[0].as_str(), "--to", days[5].as_str()];
        let killed = Command::new(env!("CARGO_BIN_EXE_latefill"))
            .args(["backfill", "--config", config])
            .args(range)
            .args(["--concurrency", "2", "--batch-size", "4"])
            .args(["--lease-seconds", "1", "--output", "json"])
            .env(FAILPOINT_ENV, step)
            .current_dir(ws.dir.path())
            .output()
            .unwrap();
        assert_aborted_at(step, &killed);
        let target_after_crash = table_version(&ws.target_path()).await;

        std::thread::sleep(std::time::Duration::from_millis(1_200));
        let lines = ws.backfill_lines(&ws.config, &days[0], &days[5], &[]);
        let processed: Vec<_> = lines.iter().filter(|l| l["event"] == "processed").collect();
        let recovered = processed.iter().filter(|l| l["recovered"] == true).count();
        assert!(
            lines
                .iter()
                .all(|l| l["event"] != "failed" && l["event"] != "skipped"),
            "{step}: {lines:?}"
        );
        match step {
            // Killed before any target commit: all six are processed now.
            "after-claim" | "mid-write" => assert_eq!(processed.len(), 6, "{step}: {lines:?}"),
            // One target commit landed and was never recorded: recovered, not redone.
            "after-commit" => assert!(recovered >= 1, "{step}: {lines:?}"),
            // At least one batch of completions was recorded: not processed again.
            _ => assert!(processed.len() < 6, "{step}: {lines:?}"),
        }
        // Nothing was written twice: one target commit per partition not recovered.
        if let Some(before) = target_after_crash {
            let rewritten = (processed.len() - recovered) as u64;
            assert_eq!(
                table_version(&ws.target_path()).await,
                Some(before + rewritten),
                "{step}: {lines:?}"
            );
        }

        for (i, d) in days.iter().enumerate() {
            assert_eq!(
                target_counts(&ws.target_path(), d).await,
                expected_counts(d, &[(500, i as u64)]),
                "{step}: {d}"
            );
        }
        let state = latefill::Engine::new(ws.pipeline()).status().await.unwrap();
        assert_eq!(state.len(), 6, "{step}: {state:?}");
        for row in &state {
            assert_eq!(row.status, "processed", "{step}: {row:?}");
            assert!(!row.late, "{step}: {row:?}");
        }
    }
}

/// The incremental path: a late partition updated from its appended rows, killed at
/// each step. The next backfill finishes it (updating it again from the version the
/// state table still records, or recognising the landed commit by its txn), and the
/// target equals the source.
#[tokio::test]
async fn a_late_update_killed_at_any_step_is_finished_by_the_next_backfill() {
    let day = "2024-03-01";
    for step in STEPS {
        let ws = Workspace::new();
        ws.generate(day, 2_000, 1).await;
        let ok = ws.run_cli(&["--date", day]);
        assert!(ok.status.success(), "{}", stderr(&ok));
        let late_version = ws.generate(day, 300, 2).await;

        let config = ws.config.to_str().unwrap();
        let killed = Command::new(env!("CARGO_BIN_EXE_latefill"))
            .args(["backfill", "--config", config, "--from", day, "--to", day])
            .args(["--lease-seconds", "1"])
            .env(FAILPOINT_ENV, step)
            .current_dir(ws.dir.path())
            .output()
            .unwrap();
        assert_aborted_at(step, &killed);
        let target_after_crash = table_version(&ws.target_path()).await;

        std::thread::sleep(std::time::Duration::from_millis(1_200));
        let lines = ws.backfill_lines(&ws.config, day, day, &[]);
        let processed: Vec<_> = lines.iter().filter(|l| l["event"] == "processed").collect();
        match step {
            // Nothing landed: updated from the 300 late rows, as the killed run began.
            // (`mid-write` may also abort right after the commit lands: then that
            // commit is recognised.)
            "after-claim" | "mid-write" => {
                let [run] = processed.as_slice() else {
                    panic!("{step}: {lines:?}")
                };
                if run["recovered"] != true {
                    assert_eq!(run["strategy"], "incremental", "{step}: {run}");
                    assert_eq!(run["rows_read"], 300, "{step}: {run}");
                } else {
                    assert_eq!(step, "mid-write", "{run}");
                }
            }
            // The update landed: recognised by its txn, not redone.
            "after-commit" => {
                let [run] = processed.as_slice() else {
                    panic!("{step}: {lines:?}")
                };
                assert_eq!(run["recovered"], true, "{step}: {run}");
                assert_eq!(table_version(&ws.target_path()).await, target_after_crash);
            }
            _ => assert!(processed.is_empty(), "{step}: {lines:?}"),
        }
        assert_eq!(
            target_counts(&ws.target_path(), day).await,
            expected_counts(day, &[(2_000, 1), (300, 2)]),
            "{step}"
        );
        let state = latefill::Engine::new(ws.pipeline()).status().await.unwrap();
        assert_eq!(state.len(), 1);
        assert_eq!(state[0].status, "processed", "{step}: {:?}", state[0]);
        assert_eq!(state[0].source_version, Some(late_version.into()), "{step}");
    }
}
