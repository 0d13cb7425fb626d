//! [`Engine::lateness`]: how late a pipeline's data arrives, from the source's log and
//! the state table alone.
//!
//! A *late change* is a commit that changed a partition's source data after the
//! partition was first processed. Its *lateness* is the time from the end of the
//! partition's period to the commit; its *runs later* the number of periods from the
//! partition's to the one the commit fell in, which is how many later runs passed
//! before it (one run a period, at the period's end), and the `--lookback` a run needs
//! to see it.
//!
//! Where the first processing is recorded (`first_processed_version` in the state
//! row's detail, which every completion keeps), it decides exactly. For partitions
//! processed before latefill recorded it, the first commit that wrote the partition
//! stands for it: every later commit counts as late. The log gives every late change
//! its commits still hold; for those log cleanup removed, the state row keeps the
//! last change of each run that reprocessed the partition (`late_changes`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use latefill_core::{PartitionDate, PartitionKey, TableVersion};
use latefill_detector::change_history;
use serde::Serialize;

use super::{Engine, Result};

/// What [`Engine::lateness`] found for one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatenessReport {
    /// The pipeline.
    pub pipeline: String,
    /// The first period considered, if limited.
    pub from: Option<String>,
    /// The last period considered, if limited.
    pub to: Option<String>,
    /// The partitions processed at least once, in the range.
    pub partitions: usize,
    /// Of those, the ones that received late data.
    pub late_partitions: usize,
    /// `late_partitions / partitions` (0 when there are none).
    pub late_share: f64,
    /// The late changes seen (a commit changing a partition after its first
    /// processing; a commit that changed two partitions counts twice).
    pub late_changes: usize,
    /// Time from the end of a partition's period to its late change, in seconds
    /// (0 for a change committed before its period ended).
    pub lateness_seconds: Option<Distribution>,
    /// How many later periods' runs passed before a late change arrived.
    pub runs_later: Option<Distribution>,
    /// The smallest `--lookback DAYS` a daily run would have needed to see 99% of
    /// the late changes in the run right after they arrived.
    pub lookback_days_99: Option<u64>,
    /// The same for all of them.
    pub lookback_days_100: Option<u64>,
    /// The latest changes, the latest first (at most 10).
    pub slowest: Vec<LateChange>,
    /// How many late changes arrived within each span after their period ended.
    pub histogram: Vec<Bucket>,
    /// Each partition's last late change (by version), for a view per partition.
    #[serde(skip)]
    pub last_change: BTreeMap<PartitionKey, LateChange>,
    /// What the report could read.
    pub coverage: Coverage,
}

/// p50, p90, p99 and max of a list, by the nearest-rank method: the p-th percentile
/// of n sorted values is the value at rank ⌈p·n/100⌉.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Distribution {
    /// Half of the values are at most this.
    pub p50: u64,
    /// 90% are at most this.
    pub p90: u64,
    /// 99% are at most this.
    pub p99: u64,
    /// The largest.
    pub max: u64,
}

impl Distribution {
    /// The distribution of `values`; `None` when there are none.
    pub fn of(mut values: Vec<u64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |p: usize| values[(p * values.len()).div_ceil(100).max(1) - 1];
        Some(Distribution {
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: *values.last().expect("not empty"),
        })
    }
}

/// Late changes that arrived within a span after their period ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// The span, in words: `1-6 h`.
    pub label: &'static str,
    /// Its upper end in seconds, excluded; `None` for the last.
    pub below_seconds: Option<u64>,
    /// How many late changes fell in it.
    pub changes: usize,
}

/// The histogram's spans: their labels and upper ends.
const BUCKETS: [(&str, Option<u64>); 8] = [
    ("under 1 h", Some(3_600)),
    ("1-6 h", Some(6 * 3_600)),
    ("6-24 h", Some(86_400)),
    ("1-2 d", Some(2 * 86_400)),
    ("2-3 d", Some(3 * 86_400)),
    ("3-7 d", Some(7 * 86_400)),
    ("7-30 d", Some(30 * 86_400)),
    ("30 d or more", None),
];

fn histogram(changes: &[LateChange]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = BUCKETS
        .iter()
        .map(|&(label, below_seconds)| Bucket {
            label,
            below_seconds,
            changes: 0,
        })
        .collect();
    for change in changes {
        let i = BUCKETS
            .iter()
            .position(|(_, below)| below.is_none_or(|b| change.lateness_seconds < b))
            .expect("the last bucket takes every change");
        buckets[i].changes += 1;
    }
    buckets
}

/// One late change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LateChange {
    /// The partition it changed.
    pub partition: PartitionKey,
    /// The partition's period alone.
    pub period: String,
    /// The source version of the commit.
    pub version: TableVersion,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// When the partition's period ended.
    pub period_end: DateTime<Utc>,
    /// `committed_at - period_end` in seconds, 0 when negative.
    pub lateness_seconds: u64,
    /// Periods from the partition's to the one the commit fell in.
    pub runs_later: u64,
    /// The `--lookback DAYS` that sees it in the run of the period it fell in.
    pub lookback_days: u64,
}

/// What the report rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The source's version read.
    pub source_version: TableVersion,
    /// The first source version whose changes were seen: 0 while the log holds
    /// every commit; after log cleanup, changes before it are not seen.
    pub read_from: TableVersion,
    /// Commits that changed data, read.
    pub commits: usize,
    /// Partitions whose first processing the state table records (exact).
    pub first_processing_recorded: usize,
    /// Partitions processed before that was recorded: their first commit stands
    /// for their first processing.
    pub first_processing_assumed: usize,
    /// Late changes counted from the state table's record alone (`late_changes` of
    /// the state row's detail): their commits were removed by log cleanup.
    pub recorded_changes: usize,
    /// Late changes whose commit recorded no time: counted, not measured.
    pub changes_without_time: usize,
}

/// A commit that changed a partition: its version and time.
type Arrival = (TableVersion, Option<DateTime<Utc>>);

impl Engine {
    /// How late this pipeline's data arrives, for the partitions of `from..=to`
    /// (all when unset). Reads the source's whole log (one read per commit it still
    /// holds) and the state table.
    pub async fn lateness(
        &self,
        from: Option<PartitionDate>,
        to: Option<PartitionDate>,
    ) -> Result<LatenessReport> {
        let history = change_history(&self.pipeline.source, &self.pipeline.source_storage)
            .await
            .map_err(|e| self.source_error(e))?;
        let state = self.state.read().await?;
        let in_range =
            |date: PartitionDate| from.is_none_or(|f| date >= f) && to.is_none_or(|t| date <= t);

        // Each pipeline partition's commits, in version order.
        let mut arrivals: BTreeMap<PartitionKey, Vec<Arrival>> = BTreeMap::new();
        for commit in &history.commits {
            for partition in &commit.partitions {
                let Some(values) = history.values_of(partition.as_str()) else {
                    continue;
                };
                let Ok(key) = self.pipeline.partitioning.key_of(partition, values) else {
                    continue;
                };
                let list = arrivals.entry(key).or_default();
                // Sub-partitions of one period in one commit are one change.
                if list.last().map(|(v, _)| *v) != Some(commit.version) {
                    list.push((commit.version, commit.committed_at));
                }
            }
        }
        let existed_before: std::collections::BTreeSet<PartitionKey> = history
            .existing_before
            .iter()
            .filter_map(|p| {
                let values = history.values_of(p.as_str())?;
                self.pipeline.partitioning.key_of(p, values).ok()
            })
            .collect();

        let mut coverage = Coverage {
            source_version: history.table_version,
            read_from: history.read_from,
            commits: history.commits.len(),
            first_processing_recorded: 0,
            first_processing_assumed: 0,
            recorded_changes: 0,
            changes_without_time: 0,
        };
        let mut partitions = 0;
        let mut late_partitions = 0;
        let mut changes: Vec<LateChange> = Vec::new();
        let mut last_change: BTreeMap<PartitionKey, LateChange> = BTreeMap::new();
        for (key, row) in &state.partitions {
            if row.source_version.is_none() || !in_range(key.date()) {
                continue;
            }
            partitions += 1;
            let detail = row
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .unwrap_or_default();
            let recorded = detail["first_processed_version"].as_u64();
            let seen = arrivals.get(key).map(Vec::as_slice).unwrap_or_default();
            let from_log: &[_] = match recorded {
                Some(first) => {
                    coverage.first_processing_recorded += 1;
                    let at = seen.partition_point(|(v, _)| v.get() <= first);
                    &seen[at..]
                }
                None => {
                    coverage.first_processing_assumed += 1;
                    // Its first commit stands for its first processing; cleaned up,
                    // every commit the log holds came after it.
                    if existed_before.contains(key) {
                        seen
                    } else {
                        seen.get(1..).unwrap_or_default()
                    }
                }
            };
            // What the state kept of late changes whose commits the log no longer
            // holds: the last change of each run that reprocessed the partition.
            let mut late: Vec<Arrival> = recorded_late_changes(&detail)
                .filter(|(v, _)| *v < history.read_from)
                .collect();
            coverage.recorded_changes += late.len();
            late.extend_from_slice(from_log);
            if !late.is_empty() {
                late_partitions += 1;
            }
            let date = key.date();
            for &(version, committed_at) in &late {
                let Some(committed_at) = committed_at else {
                    coverage.changes_without_time += 1;
                    continue;
                };
                if let Some(change) = late_change(key, date, version, committed_at) {
                    // In version order: the last one stays.
                    last_change.insert(key.clone(), change.clone());
                    changes.push(change);
                }
            }
        }
        let late_changes = changes.len() + coverage.changes_without_time;
        let lookback = Distribution::of(changes.iter().map(|c| c.lookback_days).collect());
        let histogram = histogram(&changes);
        changes.sort_by(|a, b| {
            b.lateness_seconds
                .cmp(&a.lateness_seconds)
                .then_with(|| a.partition.cmp(&b.partition))
        });
        Ok(LatenessReport {
            pipeline: self.pipeline.name.clone(),
            from: from.map(|d| d.to_string()),
            to: to.map(|d| d.to_string()),
            partitions,
            late_partitions,
            late_share: if partitions == 0 {
                0.0
            } else {
                late_partitions as f64 / partitions as f64
            },
            late_changes,
            lateness_seconds: Distribution::of(
                changes.iter().map(|c| c.lateness_seconds).collect(),
            ),
            runs_later: Distribution::of(changes.iter().map(|c| c.runs_later).collect()),
            lookback_days_99: lookback.map(|d| d.p99),
            lookback_days_100: lookback.map(|d| d.max),
            slowest: changes.into_iter().take(10).collect(),
            histogram,
            last_change,
            coverage,
        })
    }
}

/// The late changes a state row's detail kept (`late_changes`), as arrivals.
fn recorded_late_changes(detail: &serde_json::Value) -> impl Iterator<Item = Arrival> + '_ {
    detail["late_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|change| {
            let version = TableVersion::from(change["version"].as_u64()?);
            let committed_at = change["committed_at"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok());
            Some((version, committed_at))
        })
}

/// The late change of `partition` (period `date`) committed at `committed_at`;
/// `None` for a period at the end of time.
fn late_change(
    partition: &PartitionKey,
    date: PartitionDate,
    version: TableVersion,
    committed_at: DateTime<Utc>,
) -> Option<LateChange> {
    let period_end = date.end()?.and_utc();
    let lateness_seconds = u64::try_from((committed_at - period_end).num_seconds()).unwrap_or(0);
    // The period the commit fell in: its run is the first to see the change.
    let arrived = PartitionDate::containing(date.granularity(), committed_at.naive_utc())?;
    let mut runs_later = 0;
    let mut period = date;
    while period < arrived {
        period = period.succ()?;
        runs_later += 1;
    }
    // `--lookback DAYS` keeps periods starting at most DAYS days before the run's.
    let lookback_days = u64::try_from((arrived.start() - date.start()).num_seconds())
        .map_or(0, |s| s.div_ceil(86_400));
    Some(LateChange {
        partition: partition.clone(),
        period: date.to_string(),
        version,
        committed_at,
        period_end,
        lateness_seconds,
        runs_later,
        lookback_days,
    })
}

#[cfg(test)]
mod tests {
    use super::Distribution;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Distribution::of((1..=100).collect()).unwrap();
        assert_eq!((d.p50, d.p90, d.p99, d.max), (50, 90, 99, 100));
        let d = Distribution::of(vec![7, 1, 3]).unwrap();
        assert_eq!((d.p50, d.p90, d.p99, d.max), (3, 7, 7, 7));
        let d = Distribution::of(vec![4]).unwrap();
        assert_eq!((d.p50, d.max), (4, 4));
        assert_eq!(Distribution::of(Vec::new()), None);
    }
}
