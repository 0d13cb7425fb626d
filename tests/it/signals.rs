//! Ctrl-C and SIGTERM: stop taking partitions, finish the running ones, exit 130.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;

/// `days` generated days of `rows` rows, and a running `latefill backfill` over them
/// printing JSON lines; `extra` goes before `--output json`.
async fn running_backfill(
    ws: &Workspace,
    days: u64,
    rows: usize,
    extra: &[&str],
) -> (std::process::Child, Vec<String>) {
    for d in 1..=days {
        ws.generate(&format!("2024-01-{d:02}"), rows, d).await;
    }
    let to = format!("2024-01-{days:02}");
    let mut args: Vec<String> = ["backfill", "--config", ws.config.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--from".into(), "2024-01-01".into(), "--to".into(), to]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new(env!("CARGO_BIN_EXE_latefill"))
        .args(&args)
        .args(["--output", "json"])
        .current_dir(ws.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, args)
}

fn sigterm(child: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

#[tokio::test]
async fn sigterm_stops_new_partitions_and_finishes_the_running_ones() {
    let ws = Workspace::new();
    let (mut child, args) = running_backfill(&ws, 12, 3_000, &[]).await;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Wait until one partition is done, then signal.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("\"event\":\"processed\"");
        seen.push(line);
        if done {
            break;
        }
    }
    sigterm(&child);
    seen.extend(lines.map(|l| l.unwrap()));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen:?}");

    let events: Vec<serde_json::Value> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(summary["interrupted"], true);
    // The last line says why the exit code is not 0.
    assert_eq!(events.last().unwrap()["error"]["kind"], "interrupted");
    assert!(
        count("processed") >= 1 && count("processed") < 12,
        "{seen:?}"
    );
    assert_eq!(
        count("started"),
        count("processed"),
        "every started partition finished"
    );
    assert_eq!(count("processed") + count("skipped"), 12);

    // Nothing is left claimed, and the next backfill finishes the rest.
    let engine = latefill::Engine::new(ws.pipeline());
    let state = engine.state().read().await.unwrap();
    assert!(
        state
            .partitions
            .values()
            .all(|p| p.status == latefill::state::Status::Processed)
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ws.latefill(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = engine.status().await.unwrap();
    assert_eq!(rows.len(), 12);
    assert!(
        rows.iter().all(|r| r.status == "processed" && !r.late),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_second_signal_abandons_running_partitions_and_releases_their_claims() {
    let ws = Workspace::new();
    let (mut child, args) = running_backfill(&ws, 8, 20_000, &["--concurrency", "2"]).await;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("\"event\":\"started\"") {
            break;
        }
    }
    for _ in 0..2 {
        sigterm(&child);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");

    // No claim is left to expire: every row is processed, or failed as interrupted.
    let state = latefill::Engine::new(ws.pipeline())
        .state()
        .read()
        .await
        .unwrap();
    assert!(!state.partitions.is_empty());
    for row in state.partitions.values() {
        match row.status {
            latefill::state::Status::Processed => {}
            latefill::state::Status::Failed => {
                assert_eq!(row.last_error.as_deref(), Some("interrupted"), "{row:?}")
            }
            latefill::state::Status::Processing => panic!("a claim was left: {row:?}"),
        }
    }
    // The next backfill finishes everything at once, without waiting for a lease.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ws.latefill(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = latefill::Engine::new(ws.pipeline()).status().await.unwrap();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    for d in 1..=8 {
        let date = format!("2024-01-{d:02}");
        assert_eq!(
            target_counts(&ws.target_path(), &date).await,
            expected_counts(&date, &[(20_000, d)]),
            "{date}"
        );
    }
}
