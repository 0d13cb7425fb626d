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
        assert_eq!(
            killed.status.code(),
            None,
            "{step}: the process was aborted"
        );
        assert!(
            stderr(&killed).contains(&format!("failpoint {step}")),
            "{step}"
        );
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
            assert_eq!(row.source_version, Some(late_version), "{step}: {row:?}");
            assert!(!row.late, "{step}: {row:?}");
        }
    }
}
