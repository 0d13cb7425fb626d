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
    // Those left by the signal are "not started", apart from those another run held.
    assert_eq!(summary["skipped"], 0, "{summary}");
    assert_eq!(summary["not_started"], count("skipped"), "{summary}");
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

/// A running `latefill -v run --config <ws> --date <date> --output json`, its stderr
/// read line by line until a line holds `until` (which it returns with the rest of
/// stderr still to read).
fn running_run(
    ws: &Workspace,
    date: &str,
    until: impl Fn(&str) -> bool,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latefill"));
    command
        .args(["-v", "run", "--config", ws.config.to_str().unwrap()])
        .args(["--date", date, "--output", "json"]);
    running_until(ws, command, until)
}

/// `command` started in the workspace, its stderr read line by line until a line
/// holds `until`: the child, and the rest of stderr still to read.
fn running_until(
    ws: &Workspace,
    mut command: Command,
    until: impl Fn(&str) -> bool,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut child = command
        .current_dir(ws.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let found = until(&line);
        seen.push(line);
        if found {
            return (child, lines);
        }
    }
    let status = child.wait().unwrap();
    panic!("the command ended ({status}) before the line awaited: {seen:?}");
}

/// The state rows of the workspace's pipeline, by partition; none may be left
/// `processing`.
async fn rows_with_no_claim_left(
    ws: &Workspace,
) -> std::collections::BTreeMap<latefill::PartitionKey, latefill::state::PartitionState> {
    let state = latefill::Engine::new(ws.pipeline())
        .state()
        .read()
        .await
        .unwrap();
    for row in state.partitions.values() {
        assert_ne!(
            row.status,
            latefill::state::Status::Processing,
            "a claim was left: {row:?}"
        );
    }
    state.partitions
}

/// An immediate rerun of 2024-01-01 (300,000 rows of seed 1) succeeds, with no lease
/// to wait for, and the target holds exactly the partition's counts.
async fn rerun_succeeds_at_once(ws: &Workspace) {
    let out = ws.run_cli(&["--date", "2024-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        target_counts(&ws.target_path(), "2024-01-01").await,
        expected_counts("2024-01-01", &[(300_000, 1)])
    );
}

#[tokio::test]
async fn sigterm_during_a_run_finishes_its_partition_and_exits_130() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 300_000, 1).await;
    let (mut child, rest) = running_run(&ws, "2024-01-01", |l| l.contains("claimed"));
    sigterm(&child);
    let rest: Vec<String> = rest.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("\"interrupted\""), "{stdout}");

    // The partition under way was finished and recorded, so nothing waits for a
    // lease: an immediate rerun succeeds.
    let rows = rows_with_no_claim_left(&ws).await;
    assert_eq!(
        rows["event_time=2024-01-01"].status,
        latefill::state::Status::Processed
    );
    rerun_succeeds_at_once(&ws).await;
}

#[tokio::test]
async fn a_second_signal_during_a_run_releases_its_claim() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 300_000, 1).await;
    let (mut child, rest) = running_run(&ws, "2024-01-01", |l| l.contains("claimed"));
    for _ in 0..2 {
        sigterm(&child);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let rest: Vec<String> = rest.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    let rows = rows_with_no_claim_left(&ws).await;
    let row = &rows["event_time=2024-01-01"];
    if row.status == latefill::state::Status::Failed {
        assert_eq!(row.last_error.as_deref(), Some("interrupted"));
    }
    rerun_succeeds_at_once(&ws).await;
}

#[tokio::test]
async fn sigterm_while_a_run_backfills_late_partitions_leaves_the_rest_for_the_next_run() {
    let ws = Workspace::new();
    let days: Vec<String> = (1..=7).map(|d| format!("2024-01-{d:02}")).collect();
    for (i, day) in days.iter().enumerate() {
        ws.generate(day, 100, i as u64).await;
        let out = ws.run_cli(&["--date", day]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Late rows, many of them, in six days; then the next day's run.
    for (i, day) in days[..6].iter().enumerate() {
        ws.generate(day, 150_000, 100 + i as u64).await;
    }
    ws.generate("2024-01-08", 100, 8).await;
    let late_processed = |l: &str| {
        l.contains("processed")
            && days[..6]
                .iter()
                .any(|d| l.contains(&format!("event_time={d}")))
    };
    let (mut child, rest) = running_run(&ws, "2024-01-08", late_processed);
    sigterm(&child);
    let rest: Vec<String> = rest.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    let later: usize = rest.iter().filter(|l| late_processed(l)).count();
    assert!(later < 5, "the stop was not heeded: {rest:?}");

    // Every claim was given back or completed; the next run finishes the rest.
    rows_with_no_claim_left(&ws).await;
    let out = ws.run_cli(&["--date", "2024-01-08"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = ws.status_json(&ws.config);
    assert_eq!(late_partitions(&status), Vec::<String>::new());
    for day in days.iter().chain(["2024-01-08".to_owned()].iter()) {
        assert_eq!(
            target_counts(&ws.target_path(), day).await,
            recomputed_counts(&ws.source_path(), day).await,
            "{day}"
        );
    }
}

/// A scheduler stopping a hand-out (`detect` or `run` with `--backfill-config`) after
/// the claims are taken and before the plan file is written: exit 130, no plan file,
/// the claims given back (the next hand-out claims them at once), and nothing left
/// for a lease to expire.
#[tokio::test]
async fn sigterm_during_a_hand_out_gives_the_claims_back_and_writes_no_plan() {
    let ws = Workspace::new();
    for d in 1..=3 {
        let day = format!("2024-01-{d:02}");
        ws.generate(&day, 100, d).await;
        assert!(ws.run_cli(&["--date", &day]).status.success());
    }
    ws.generate("2024-01-01", 100, 11).await;
    ws.generate("2024-01-02", 100, 12).await;
    ws.generate("2024-01-04", 100, 4).await;
    let config = ws.config.to_str().unwrap();
    let plan = ws.dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    let detect = ["detect", "--config", config, "--date", "2024-01-04"];
    let run = ["run", "--config", config, "--date", "2024-01-04"];
    for command in [&detect[..], &run[..]] {
        let mut hand_out = Command::new(env!("CARGO_BIN_EXE_latefill"));
        hand_out
            .args(command)
            .args(["--backfill-config", plan_arg, "--output", "json"])
            .env(latefill::executor::FAILPOINT_ENV, "pause:handed-out");
        let (mut child, lines) =
            running_until(&ws, hand_out, |l| l.contains("paused at handed-out"));
        let mut seen = Vec::new();
        // Both late days are claimed for the hand-out at this point.
        let rows = latefill::Engine::new(ws.pipeline())
            .state()
            .read()
            .await
            .unwrap();
        let claimed = |rows: &latefill::state::StateSnapshot| {
            rows.partitions
                .values()
                .filter(|r| r.status == latefill::state::Status::Processing)
                .count()
        };
        assert_eq!(claimed(&rows), 2, "{command:?}: {seen:?}");
        sigterm(&child);
        seen.extend(lines.map(|l| l.unwrap()));
        assert_eq!(
            child.wait().unwrap().code(),
            Some(130),
            "{command:?}: {seen:?}"
        );
        assert!(!plan.exists(), "{command:?}: a plan was written");
        let rows = rows_with_no_claim_left(&ws).await;
        for day in ["2024-01-01", "2024-01-02"] {
            let row = &rows[format!("event_time={day}").as_str()];
            assert_eq!(row.last_error.as_deref(), Some("interrupted"), "{row:?}");
        }
    }
    // The next hand-out claims both at once, and writes the plan.
    let out = ws.latefill(&[&detect[..], &["--backfill-config", plan_arg]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(
        written["partitions"],
        serde_json::json!(["event_time=2024-01-01", "event_time=2024-01-02"])
    );
}
