//! `latefill lateness` on a generated history of known lateness: rows for day D
//! arriving k days later, k drawn from a known distribution, each commit's time set
//! as it would have been. The reported percentiles must be those of the generated
//! lateness; and so after the state is rebuilt (history processed before latefill
//! recorded first processings) and after log cleanup (what is lost is said).

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::common::*;

/// Sets the time of commit `version` of the table at `table`, as its writer would
/// have recorded it had it run at `at`.
fn set_commit_time(table: &Path, version: u64, at: DateTime<Utc>) {
    let path = table.join("_delta_log").join(format!("{version:020}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(info) = action.get_mut("commitInfo") {
                info["timestamp"] = at.timestamp_millis().into();
                found = true;
            }
            action.to_string()
        })
        .collect();
    assert!(found, "commit {version} has no commitInfo");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// p50, p90, p99 and max by nearest rank, computed here apart from latefill's.
fn percentiles(values: &[u64]) -> [u64; 4] {
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = |p: usize| v[((p * v.len()) as f64 / 100.0).ceil() as usize - 1];
    [rank(50), rank(90), rank(99), *v.last().unwrap()]
}

fn distribution(report: &serde_json::Value, field: &str) -> [u64; 4] {
    let d = &report[field];
    ["p50", "p90", "p99", "max"].map(|p| d[p].as_u64().unwrap_or_else(|| panic!("{report}")))
}

/// One late batch: the day it belongs to, how many days later it arrived, the
/// minute of that day it was committed, and the version it was committed at.
struct Late {
    day: u32,
    days_later: u32,
    minute: u32,
    version: u64,
}

impl Late {
    /// Seconds from the end of its day to its commit.
    fn lateness(&self) -> u64 {
        u64::from((self.days_later - 1) * 86_400 + self.minute * 60)
    }
}

/// The day whose rows arrive in two commits, both before its run.
const TWO_MORNING_BATCHES: u32 = 3;

const DAYS: u32 = 16;

/// The story: each morning the previous day's rows arrive at 00:30 and that day is
/// run; late rows of earlier days arrive during the day, k days after their own,
/// with k drawn from {1: 50%, 2: 25%, 3: 15%, 5: 7%, 9: 3%}. One day's rows arrive
/// in two commits before its run (00:30 and 00:40): not late, though a history
/// without recorded first processings cannot tell. A checkpoint is written on the
/// 8th morning. Returns the workspace, the late batches, the second morning batch
/// and the checkpoint's version.
async fn generated_history(seed: u64) -> (Workspace, Vec<Late>, Late, u64) {
    let ws = Workspace::new();
    let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let day = |i: u32| (start + Duration::days(i64::from(i))).to_string();
    let midnight = |i: u32| {
        (start + Duration::days(i64::from(i)))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    };
    let mut draws = SplitMix64(seed);
    // The late batches of each day, decided up front: 0, 1 or 2.
    let mut planned: Vec<(u32, u32)> = Vec::new();
    for i in 0..DAYS {
        for _ in 0..draws.below(3) {
            let k = match draws.below(100) {
                0..50 => 1,
                50..75 => 2,
                75..90 => 3,
                90..97 => 5,
                _ => 9,
            };
            planned.push((i, k));
        }
    }
    let mut late = Vec::new();
    let mut second_batch = None;
    let mut checkpoint = 0;
    let config = ws.config.to_str().unwrap().to_owned();
    for a in 1..=DAYS + 9 {
        if a <= DAYS {
            let version = ws.generate(&day(a - 1), 200, u64::from(a)).await;
            set_commit_time(
                &ws.source_path(),
                version,
                midnight(a) + Duration::minutes(30),
            );
            if a - 1 == TWO_MORNING_BATCHES {
                let version = ws.generate(&day(a - 1), 50, 500).await;
                set_commit_time(
                    &ws.source_path(),
                    version,
                    midnight(a) + Duration::minutes(40),
                );
                second_batch = Some(Late {
                    day: a - 1,
                    days_later: 1,
                    minute: 40,
                    version,
                });
            }
            let out = ws.latefill(&["run", "--config", &config, "--date", &day(a - 1)]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        if a == 8 {
            let table = open(&ws.source_path()).await;
            checkpoint = table_version(&ws.source_path()).await.unwrap();
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .unwrap();
        }
        for &(i, k) in planned.iter().filter(|(i, k)| i + k == a) {
            let hour = 1 + draws.below(22) as u32;
            let version = ws.generate(&day(i), 20, 1_000 + late.len() as u64).await;
            set_commit_time(
                &ws.source_path(),
                version,
                midnight(a) + Duration::hours(i64::from(hour)),
            );
            late.push(Late {
                day: i,
                days_later: k,
                minute: hour * 60,
                version,
            });
        }
    }
    assert!(late.len() >= 8, "the draws made too few late batches");
    (ws, late, second_batch.unwrap(), checkpoint)
}

fn lateness_json(ws: &Workspace) -> serde_json::Value {
    let out = ws.latefill(&[
        "lateness",
        "--config",
        ws.config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    json_lines(&out).remove(0)
}

/// Asserts that `report` describes `late`, the late batches it can see.
fn assert_describes(report: &serde_json::Value, late: &[&Late]) {
    let mut days: Vec<u32> = late.iter().map(|l| l.day).collect();
    days.sort_unstable();
    days.dedup();
    assert_eq!(report["partitions"], DAYS, "{report}");
    assert_eq!(report["late_partitions"], days.len(), "{report}");
    assert_eq!(report["late_changes"], late.len(), "{report}");
    let lateness: Vec<u64> = late.iter().map(|l| l.lateness()).collect();
    assert_eq!(
        distribution(report, "lateness_seconds"),
        percentiles(&lateness)
    );
    let runs: Vec<u64> = late.iter().map(|l| u64::from(l.days_later)).collect();
    let runs_later = percentiles(&runs);
    assert_eq!(distribution(report, "runs_later"), runs_later);
    assert_eq!(report["lookback_days_99"], runs_later[2], "{report}");
    assert_eq!(report["lookback_days_100"], runs_later[3], "{report}");
    let slowest = late.iter().max_by_key(|l| l.lateness()).unwrap();
    assert_eq!(
        report["slowest"][0]["lateness_seconds"],
        slowest.lateness(),
        "{report}"
    );
}

#[tokio::test]
async fn lateness_reports_the_generated_distribution() {
    for seed in [7, 11] {
        let (ws, late, _, checkpoint) = generated_history(seed).await;
        let report = lateness_json(&ws);
        assert_describes(&report, &late.iter().collect::<Vec<_>>());
        assert_eq!(
            report["coverage"]["first_processing_recorded"], DAYS,
            "{report}"
        );
        assert_eq!(report["coverage"]["read_from"], 0, "{report}");

        // The text says the same, with the lookback to set.
        let text = stdout(&ws.latefill(&["lateness", "--config", ws.config.to_str().unwrap()]));
        let lookback = report["lookback_days_99"].as_u64().unwrap();
        assert!(
            text.contains(&format!(
                "--lookback {lookback} would have covered 99% of the late changes seen"
            )),
            "{text}"
        );

        // A range: only the late batches of its days.
        let out = ws.latefill(&[
            "lateness",
            "--config",
            ws.config.to_str().unwrap(),
            "--from",
            "2024-01-05",
            "--to",
            "2024-01-10",
            "--format",
            "json",
        ]);
        let ranged = json_lines(&out).remove(0);
        let inside = late.iter().filter(|l| (4..=9).contains(&l.day)).count();
        assert_eq!(ranged["partitions"], 6, "{ranged}");
        assert_eq!(ranged["late_changes"], inside, "{ranged}");

        // After log cleanup, the state's record keeps the late changes whose commits
        // are gone: the last change of each run that reprocessed a partition (late
        // rows of one day that arrived on one day are reprocessed by one run).
        let log = ws.source_path().join("_delta_log");
        for v in 0..checkpoint {
            std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
        }
        let mut runs: std::collections::BTreeMap<(u32, u32), &Late> = Default::default();
        for l in late.iter().filter(|l| l.version <= checkpoint) {
            let last = runs.entry((l.day, l.day + l.days_later)).or_insert(l);
            if l.version > last.version {
                *last = l;
            }
        }
        let mut expected: Vec<&Late> = late.iter().filter(|l| l.version > checkpoint).collect();
        expected.extend(runs.values());
        let report = lateness_json(&ws);
        assert_eq!(report["coverage"]["read_from"], checkpoint + 1, "{report}");
        assert_eq!(
            report["coverage"]["recorded_changes"],
            runs.len(),
            "{report}"
        );
        assert!(!runs.is_empty(), "no late change before the checkpoint");
        assert_describes(&report, &expected);
    }
}

/// History processed before latefill recorded first processings (here: a state
/// rebuilt from the target's `txn` actions) is judged by its first commits: the
/// same answer, but for a day whose rows came in two commits before its run, whose
/// second now counts as late. After log cleanup, only what the log still holds is
/// seen, and the report says from which version.
#[tokio::test]
async fn lateness_from_rebuilt_state_and_a_cleaned_up_log() {
    let (ws, late, second_batch, checkpoint) = generated_history(5).await;
    let config = ws.config.to_str().unwrap();
    std::fs::remove_dir_all(ws.dir.path().join("state")).unwrap();
    let out = ws.latefill(&["state", "rebuild", "--config", config]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = lateness_json(&ws);
    let mut assumed: Vec<&Late> = late.iter().collect();
    assumed.push(&second_batch);
    assert_describes(&report, &assumed);
    assert_eq!(report["coverage"]["first_processing_assumed"], DAYS);

    let log = ws.source_path().join("_delta_log");
    for v in 0..checkpoint {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let report = lateness_json(&ws);
    let seen: Vec<&Late> = assumed
        .into_iter()
        .filter(|l| l.version > checkpoint)
        .collect();
    assert_eq!(report["coverage"]["read_from"], checkpoint + 1, "{report}");
    assert_eq!(report["late_changes"], seen.len(), "{report}");
    let text = stdout(&ws.latefill(&["lateness", "--config", config]));
    assert!(
        text.contains(&format!(
            "from version {} on (older commits were cleaned up",
            checkpoint + 1
        )),
        "{text}"
    );
}
