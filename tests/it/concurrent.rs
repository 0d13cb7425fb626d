//! Many `latefill` processes on one pipeline at once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use latefill::PartitionDate;
use latefill::executor::run_partition;

use crate::common::*;

#[derive(Debug, Clone)]
struct Processing {
    source_version: u64,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

fn day(d: u32) -> String {
    format!("2024-01-{d:02}")
}

/// Every partition's processings, from the JSON lines of each process.
fn processings(outputs: &[std::process::Output]) -> BTreeMap<String, Vec<Processing>> {
    let mut out: BTreeMap<String, Vec<Processing>> = BTreeMap::new();
    for o in outputs {
        for line in stdout(o).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_ne!(v["event"], "failed", "{line}");
            if v["event"] != "processed" {
                continue;
            }
            let time = |k: &str| v[k].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
            out.entry(v["partition"].as_str().unwrap().to_owned())
                .or_default()
                .push(Processing {
                    source_version: v["source_version"].as_u64().unwrap(),
                    started_at: time("started_at"),
                    finished_at: time("finished_at"),
                });
        }
    }
    for list in out.values_mut() {
        list.sort_by_key(|p| p.started_at);
    }
    out
}

/// Regression: a process that planned a late partition from a state another process
/// had already acted on used to claim it once that process completed, and reprocess
/// it for the same change; claims of planned partitions now check the planned row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_overlapping_ranges_lose_and_duplicate_nothing() {
    let ws = Workspace::new();
    let config = ws.config.to_str().unwrap().to_owned();
    // Source version at which each partition's data changed.
    let mut changes: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let generate =
        async |d: u32, rows: usize, seed: u64, changes: &mut BTreeMap<_, BTreeSet<u64>>| {
            let v = ws.generate(&day(d), rows, seed).await;
            changes
                .entry(format!("event_time={}", day(d)))
                .or_default()
                .insert(v);
        };
    for d in 1..=10 {
        generate(d, 800, u64::from(d), &mut changes).await;
    }
    let first = ws.latefill(&[
        "backfill",
        "--config",
        &config,
        "--from",
        &day(1),
        "--to",
        &day(10),
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    for d in [2, 4, 6, 8, 10] {
        generate(d, 200, 100 + u64::from(d), &mut changes).await;
    }

    // K=4 processes, overlapping ranges and overlapping late partitions.
    let ranges = [(1, 10), (1, 6), (5, 10), (1, 10)];
    let children: Vec<_> = ranges
        .iter()
        .map(|(from, to)| {
            let (from, to) = (day(*from), day(*to));
            spawn_latefill(
                ws.dir.path(),
                &[
                    "backfill",
                    "--config",
                    &config,
                    "--from",
                    &from,
                    "--to",
                    &to,
                    "--only-late",
                    "--concurrency",
                    "2",
                    "--output",
                    "json",
                ],
            )
        })
        .collect();
    // Late data lands while they run.
    generate(3, 150, 200, &mut changes).await;
    generate(4, 150, 201, &mut changes).await;
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    let done = processings(&outputs);
    assert!(
        done.len() >= 5,
        "the late partitions were reprocessed: {done:?}"
    );

    let state = latefill::Engine::new(ws.pipeline())
        .state()
        .read()
        .await
        .unwrap();
    for (partition, runs) in &done {
        for pair in runs.windows(2) {
            // (a) never two at once.
            assert!(
                pair[0].finished_at <= pair[1].started_at,
                "{partition} processed twice at once: {pair:?}"
            );
            // (b) never twice for the same change.
            let (v1, v2) = (pair[0].source_version, pair[1].source_version);
            assert!(
                changes[partition].iter().any(|c| v1 < *c && *c <= v2),
                "{partition} reprocessed at {v2} without a change since {v1}"
            );
        }
        // (c) the last processing is what the state records.
        let row = &state.partitions[partition.as_str()];
        assert_eq!(
            row.status,
            latefill::state::Status::Processed,
            "{partition}"
        );
        assert_eq!(
            row.source_version,
            runs.last().map(|r| r.source_version.into()),
            "{partition}"
        );
    }

    // (d) the target equals one sequential run at the versions the state records.
    let mut scratch = ws.pipeline();
    scratch.target = url_of(&ws.dir.path().join("sequential"));
    for (partition, row) in &state.partitions {
        run_partition(&scratch, partition.date())
            .with_source_version(row.source_version)
            .await
            .unwrap();
    }
    for d in 1..=10 {
        assert_eq!(
            target_partition_text(&ws.target_path(), &day(d)).await,
            target_partition_text(&ws.dir.path().join("sequential"), &day(d)).await,
            "{}",
            day(d)
        );
    }
}

/// The day `d` of June 2024.
fn june(d: u32) -> PartitionDate {
    PartitionDate::parse(&format!("2024-06-{d:02}")).unwrap()
}

/// A workspace whose source has June's first `days` days, `rows` rows each.
async fn with_june_days(days: u32, rows: usize) -> Workspace {
    let ws = Workspace::new();
    for d in 1..=days {
        ws.generate(&june(d).to_string(), rows, u64::from(d)).await;
    }
    ws
}

/// Another run's handle on `pipeline`'s state table.
fn another_run(pipeline: &latefill::executor::Pipeline) -> latefill::state::StateTable {
    latefill::state::StateTable::new(
        pipeline.state.clone(),
        &pipeline.name,
        pipeline.partitioning.clone(),
    )
}

/// `work` run to its end on a runtime of its own: for a backfill's listener, which is
/// called from within the backfill's runtime and cannot wait on it.
fn on_a_runtime_of_its_own<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || tokio::runtime::Runtime::new().unwrap().block_on(work))
        .join()
        .unwrap()
}

/// A backfill's batch of claims waits while its partitions go one after another; a
/// claim that another run took over after its lease expired is never started: the
/// claim is renewed first, the renewal fails, and the partition is left to its holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_claim_taken_over_after_its_lease_is_never_started() {
    use std::sync::{Arc, Mutex};

    use latefill::backfill::{BackfillEvent, Batching};
    use latefill::state::TestClock;

    let day = june;
    let ws = with_june_days(4, 100).await;
    let pipeline = ws.pipeline();
    let clock = Arc::new(TestClock::new(Utc::now()));
    let engine = latefill::Engine::new(pipeline.clone()).with_clock(clock.clone());
    let other = another_run(&pipeline).with_clock(clock.clone());
    let last = pipeline.partitioning.key(day(4));

    let started = Arc::new(Mutex::new(Vec::new()));
    let listener = {
        let (started, clock, last) = (started.clone(), clock.clone(), last.clone());
        let other = other.clone();
        move |event: &BackfillEvent| {
            let BackfillEvent::Started { partition } = event else {
                return;
            };
            started.lock().unwrap().push(partition.clone());
            // Each partition takes 4 minutes of the 10-minute lease.
            clock.advance(chrono::Duration::minutes(4));
            if started.lock().unwrap().len() == 3 {
                // 12 minutes after the batch was claimed: the last claim has expired,
                // and another run takes it over.
                let (other, last) = (other.clone(), last.clone());
                on_a_runtime_of_its_own(async move { other.claim(&[last], "run-b").await })
                    .expect("an expired claim can be taken over");
            }
        }
    };
    let report = engine
        .backfill(day(1), day(4))
        .with_batching(Batching {
            size: 4,
            ..Batching::default()
        })
        .with_listener(listener)
        .await
        .unwrap();

    let started = started.lock().unwrap().clone();
    assert!(!started.contains(&last), "{started:?}");
    assert_eq!(report.processed.len(), 3, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].partition, last);
    assert!(report.failed[0].reason.contains("run-b"), "{report:?}");
    let held = &other.read().await.unwrap().partitions[&last];
    assert_eq!(held.run_id, "run-b");
}

/// A backfill makes one state commit a batch: each claim, made while the partitions
/// of the batch before run, also records the completions since the last commit; the
/// last completions take one more commit.
#[tokio::test]
async fn a_backfill_makes_one_state_commit_a_batch() {
    let ws = Workspace::new();
    let days = ws.generate_days("2024-04", 25, 20).await;
    // The state table's creation and the first day.
    ws.backfill_lines(&ws.config, &days[0], &days[0], &[]);
    let state = ws.dir.path().join("state");
    let before = table_version(&state).await.unwrap();

    let lines = ws.backfill_lines(
        &ws.config,
        &days[1],
        &days[24],
        &["--concurrency", "2", "--batch-size", "8"],
    );
    let processed = lines.iter().filter(|l| l["event"] == "processed").count();
    assert_eq!(processed, 24, "{lines:?}");
    // Three claims of 8, each with the completions since the one before; after the
    // last claim, the completions of at most a batch and the partitions running then:
    // two commits at most. No commit records completions alone while a claim is to
    // come.
    let claims = lines.iter().filter(|l| l["event"] == "claimed").count();
    assert_eq!(claims, 3, "{lines:?}");
    let commits = table_version(&state).await.unwrap() - before;
    assert!(
        commits <= claims as u64 + 2,
        "{commits} state commits for {claims} claims"
    );
}

/// Partitions another run claims after a backfill planned them do not shrink its
/// batches: a claim lists more candidates than it claims, skips those held, and
/// fills the batch from the next free ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_fills_its_batches_past_partitions_another_run_took() {
    use std::sync::{Arc, Mutex};

    use latefill::backfill::{BackfillEvent, Batching};

    let day = june;
    let ws = with_june_days(12, 50).await;
    let pipeline = ws.pipeline();
    let engine = latefill::Engine::new(pipeline.clone());
    let other = another_run(&pipeline);
    let key = |d: u32| pipeline.partitioning.key(day(d));
    let taken: Vec<_> = [1, 2, 5, 6].map(key).to_vec();

    let claims = Arc::new(Mutex::new(Vec::new()));
    let listener = {
        let (claims, taken) = (claims.clone(), taken.clone());
        move |event: &BackfillEvent| match event {
            // Once the plan is made, another run takes days 1, 2, 5 and 6.
            BackfillEvent::Planned { .. } => {
                let (other, taken) = (other.clone(), taken.clone());
                on_a_runtime_of_its_own(async move { other.claim(&taken, "run-b").await }).unwrap();
            }
            BackfillEvent::Claimed { partitions } => {
                claims.lock().unwrap().push(partitions.clone());
            }
            _ => {}
        }
    };
    let report = engine
        .backfill(day(1), day(12))
        .with_batching(Batching {
            size: 4,
            ..Batching::default()
        })
        .with_listener(listener)
        .await
        .unwrap();

    let claims = claims.lock().unwrap().clone();
    assert_eq!(
        claims,
        vec![
            [3, 4, 7, 8].map(key).to_vec(),
            [9, 10, 11, 12].map(key).to_vec()
        ]
    );
    assert_eq!(report.processed.len(), 8, "{report:?}");
    let skipped: Vec<_> = report.skipped.iter().map(|s| s.partition.clone()).collect();
    assert_eq!(skipped, taken, "{report:?}");
    assert!(
        report
            .skipped
            .iter()
            .all(|s| s.reason.contains("changed since it was planned")),
        "{report:?}"
    );
    assert!(report.failed.is_empty(), "{report:?}");
}

/// A backfill reads the source as of its start, as it planned: a commit that lands
/// while it runs is read by none of its partitions (each records the version the
/// backfill began with), and the next detection finds the day it changed late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_reads_the_source_as_of_its_start() {
    use latefill::backfill::BackfillEvent;

    let day = june;
    let ws = with_june_days(4, 50).await;
    let began_with = table_version(&ws.source_path()).await.unwrap();
    let engine = latefill::Engine::new(ws.pipeline());
    let source = ws.source_path();
    let listener = move |event: &BackfillEvent| {
        if let BackfillEvent::Started { partition } = event
            && partition.date() == day(1)
        {
            // Late rows for the last day land before any partition has read them.
            let source = source.clone();
            on_a_runtime_of_its_own(async move {
                latefill::datagen::GenerateOptions::new(source.to_str().unwrap(), "2024-06-04")
                    .unwrap()
                    .with_rows(5)
                    .with_seed(99)
                    .write()
                    .await
                    .unwrap()
            });
        }
    };
    let report = engine
        .backfill(day(1), day(4))
        .with_listener(listener)
        .await
        .unwrap();

    assert_eq!(report.processed.len(), 4, "{report:?}");
    for run in &report.processed {
        assert_eq!(run.source_version, began_with, "{run:?}");
    }
    assert_eq!(
        table_version(&ws.source_path()).await,
        Some(began_with + 1),
        "the late rows landed during the backfill"
    );
    let detection = engine.detect(day(5)).await.unwrap();
    let late: Vec<_> = detection.late.iter().map(|l| l.partition.date()).collect();
    assert_eq!(late, [day(4)], "{detection:?}");
}

/// A backfill saves the detector's cursor in its first claim's commit, not in a commit
/// of its own: a backfill of a batch makes two state commits (the claim, then the
/// completions), and the next detection starts from where it left off.
#[tokio::test]
async fn a_backfill_saves_the_cursor_with_its_first_claim() {
    let day = june;
    let ws = with_june_days(1, 20).await;
    let engine = latefill::Engine::new(ws.pipeline());
    engine.backfill(day(1), day(1)).await.unwrap();
    let state = ws.dir.path().join("state");
    let before = table_version(&state).await.unwrap();
    for d in 2..=4 {
        ws.generate(&day(d).to_string(), 20, u64::from(d)).await;
    }

    let report = engine.backfill(day(1), day(4)).await.unwrap();
    assert_eq!(report.processed.len(), 3, "{report:?}");
    assert_eq!(table_version(&state).await.unwrap() - before, 2);
    let detection = engine.detect(day(5)).await.unwrap();
    assert_eq!(detection.detection.mode, "cursor", "{detection:?}");
    assert_eq!(detection.detection.commits_read, 0, "{detection:?}");
}
