//! Planning: which processed partitions are late for a run of date D.
//!
//! A partition is late when it was processed before D at some source version, its data
//! changed after that version, no unexpired lease holds it, and it falls within the
//! optional look-back horizon. A later attempt that failed (or was interrupted) does
//! not change that: the target still holds the output of that version. Pure: the state, the detector's answer and the time
//! come in, the plan goes out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use latefill_core::{PartitionDate, PartitionKey, Partitioning, TableVersion};
use latefill_state::{PartitionState, Status};
use serde::Serialize;

/// A partition to reprocess, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatePartition {
    /// The partition: `col=YYYY-MM-DD` as it prints.
    pub partition: PartitionKey,
    /// The partition's period alone (`2024-01-03`), as `--date` takes it.
    pub period: String,
    /// The source version it was last processed at; `None` when that was a version
    /// of a source table that was since replaced.
    pub processed_at: Option<TableVersion>,
    /// The last version its data changed at (an upper bound when not `exact`).
    pub last_change_version: TableVersion,
    /// `false` when log cleanup hid the exact version and the file fingerprint
    /// decided instead.
    pub exact: bool,
    /// How a run would bring it up to date, why, and what it would read; set by
    /// read-only detections (`detect`, `run --no-backfill`), not by planning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<latefill_executor::Choice>,
}

/// A partition of the pipeline whose source data changed. A source may be
/// partitioned by more columns than the pipeline's (`event_time`, `region`): the
/// partition's change is then the latest of its source partitions'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The partition.
    pub partition: PartitionKey,
    /// The last source version whose commit changed its data.
    pub last_change_version: TableVersion,
    /// `false` when log cleanup hid the exact version: it changed at some version up
    /// to `last_change_version`.
    pub exact: bool,
}

/// What planning needs to know beyond the state and the changes.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// How the pipeline's partitions are named.
    pub partitioning: &'a Partitioning,
    /// The run's date: only partitions before it are considered; every partition
    /// when `None` (a status).
    pub before: Option<PartitionDate>,
    /// Only partitions at most this many days before `before`.
    pub lookback_days: Option<u32>,
    /// Now, for leases.
    pub now: DateTime<Utc>,
    /// Current file fingerprints per partition, needed only where a change version is
    /// not exact; a partition missing here is treated as changed.
    pub fingerprints: Option<&'a BTreeMap<PartitionKey, String>>,
}

impl PlanInput<'_> {
    /// Whether a plan looks at `partition`: before the run's date (if any), within
    /// the look-back horizon.
    pub fn considers(&self, partition: &PartitionKey) -> bool {
        self.considers_period(partition.date())
    }

    /// Whether a plan looks at the partition of `date`: before the run's date (if
    /// any), within the look-back horizon.
    fn considers_period(&self, date: PartitionDate) -> bool {
        let Some(before) = self.before else {
            return true;
        };
        let earliest = self.lookback_days.map(|days| {
            before
                .start()
                .checked_sub_days(chrono::Days::new(u64::from(days)))
                .unwrap_or(chrono::NaiveDateTime::MIN)
        });
        date < before && earliest.is_none_or(|e| date.start() >= e)
    }
}

/// Whether `row` was processed by another transform than `transform` (or by one
/// latefill did not record): its output is stale.
pub fn is_stale(row: &PartitionState, transform: &str) -> bool {
    row.status == Status::Processed && row.transform.as_deref() != Some(transform)
}

/// The stale partitions a plan for the date considers ([`is_stale`]), sorted by name.
pub fn plan_stale(
    state: &BTreeMap<PartitionKey, PartitionState>,
    transform: &str,
    input: &PlanInput<'_>,
) -> Vec<PartitionKey> {
    state
        .iter()
        .filter(|(key, row)| is_stale(row, transform) && input.considers(key))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Whether `row` may be late: it was processed (at the version it records), and no
/// run holds it. A partition whose reprocessing failed, or was interrupted and given
/// back, still holds the output of that version: it stays late until a run succeeds.
/// One that never succeeded is not late, only not done yet.
pub fn can_be_late(row: &PartitionState) -> bool {
    match row.status {
        Status::Processed => true,
        Status::Failed => row.source_version.is_some(),
        Status::Processing => false,
    }
}

/// The late partitions, sorted by name.
pub fn plan_late(
    state: &BTreeMap<PartitionKey, PartitionState>,
    changes: &[Change],
    input: &PlanInput<'_>,
) -> Vec<LatePartition> {
    let mut late = Vec::new();
    for change in changes {
        if !input.considers(&change.partition) {
            continue;
        }
        let Some(row) = state.get(&change.partition) else {
            continue; // never processed: not late, just not done yet
        };
        if row.is_leased(input.now) || !can_be_late(row) {
            continue;
        }
        let processed_at = row.source_version;
        if processed_at.is_some_and(|v| change.last_change_version <= v) {
            continue;
        }
        if !change.exact || processed_at.is_none() {
            // The version is only an upper bound, or the row's version belongs to a
            // replaced table: compare the files themselves.
            let current = input.fingerprints.and_then(|f| f.get(&change.partition));
            if current.is_some() && current == row.fingerprint.as_ref() {
                continue;
            }
        }
        late.push(LatePartition {
            period: change.partition.date().to_string(),
            partition: change.partition.clone(),
            processed_at,
            last_change_version: change.last_change_version,
            exact: change.exact,
            strategy: None,
        });
    }
    late.sort_by(|a, b| a.partition.cmp(&b.partition));
    late
}

#[cfg(test)]
mod tests {
    use super::*;

    static DAYS: std::sync::LazyLock<Partitioning> = std::sync::LazyLock::new(|| {
        Partitioning::new("event_time", latefill_core::Granularity::Day)
    });

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn key(partition: &str) -> PartitionKey {
        DAYS.parse_name(partition).unwrap()
    }

    fn row(partition: &str, status: Status, version: u64, leased: bool) -> PartitionState {
        PartitionState {
            partition: key(partition),
            status,
            source_version: Some(version.into()),
            fingerprint: Some("1:aaaa".into()),
            transform: Some("sql:1".into()),
            run_id: "other-run".into(),
            owner: "host:1".into(),
            lease_expires_at: leased.then(|| now() + chrono::Duration::minutes(5)),
            attempts: 1,
            last_error: None,
            detail: None,
            updated_at: now(),
        }
    }

    fn change(partition: &str, version: u64, exact: bool) -> Change {
        Change {
            partition: key(partition),
            last_change_version: version.into(),
            exact,
        }
    }

    fn by_name(rows: Vec<PartitionState>) -> BTreeMap<PartitionKey, PartitionState> {
        rows.into_iter().map(|r| (r.partition.clone(), r)).collect()
    }

    /// A run of 2024-01-10, no lookback, no fingerprints.
    fn input<'a>() -> PlanInput<'a> {
        PlanInput {
            partitioning: &DAYS,
            before: Some(PartitionDate::parse("2024-01-10").unwrap()),
            lookback_days: None,
            now: now(),
            fingerprints: None,
        }
    }

    fn names(late: Vec<LatePartition>) -> Vec<String> {
        late.into_iter().map(|l| l.partition.to_string()).collect()
    }

    fn plan(state: Vec<PartitionState>, changes: Vec<Change>) -> Vec<String> {
        names(plan_late(&by_name(state), &changes, &input()))
    }

    const P: &str = "event_time=2024-01-05";

    #[test]
    fn never_processed_is_not_late() {
        assert!(plan(vec![], vec![change(P, 31, true)]).is_empty());
    }

    #[test]
    fn processed_at_the_last_change_is_not_late() {
        let state = vec![row(P, Status::Processed, 5, false)];
        assert!(plan(state, vec![change(P, 5, true)]).is_empty());
    }

    #[test]
    fn changed_after_processing_is_late() {
        let state = vec![row(P, Status::Processed, 5, false)];
        assert_eq!(plan(state, vec![change(P, 31, true)]), [P]);
    }

    #[test]
    fn processed_after_the_last_change_is_not_late() {
        let state = vec![row(P, Status::Processed, 10, false)];
        assert!(plan(state, vec![change(P, 5, true)]).is_empty());
    }

    #[test]
    fn a_partition_leased_by_another_run_is_not_late() {
        let state = vec![row(P, Status::Processing, 5, true)];
        assert!(plan(state, vec![change(P, 31, true)]).is_empty());
    }

    /// Whether `partition`, processed at 5 and changed at 31, is late for 2024-01-10.
    fn late_when_changed_after_processing(partition: &str) -> bool {
        let state = vec![row(partition, Status::Processed, 5, false)];
        !plan(state, vec![change(partition, 31, true)]).is_empty()
    }

    #[test]
    fn the_run_date_itself_is_not_late() {
        assert!(!late_when_changed_after_processing("event_time=2024-01-10"));
    }

    #[test]
    fn a_date_after_the_run_date_is_not_late() {
        assert!(!late_when_changed_after_processing("event_time=2024-01-11"));
        // The same row a day before the run date is late: the cutoff is the date.
        assert!(late_when_changed_after_processing("event_time=2024-01-09"));
    }

    #[test]
    fn lookback_limits_how_far_back() {
        let old = "event_time=2024-01-01";
        let state = by_name(vec![
            row(old, Status::Processed, 1, false),
            row(P, Status::Processed, 1, false),
        ]);
        let changes = vec![change(old, 9, true), change(P, 9, true)];
        let mut input = PlanInput {
            lookback_days: Some(7),
            ..input()
        };
        assert_eq!(names(plan_late(&state, &changes, &input)), [P]);
        input.lookback_days = None;
        assert_eq!(names(plan_late(&state, &changes, &input)), [old, P]);
    }

    #[test]
    fn an_inexact_change_is_decided_by_the_file_fingerprint() {
        let state = by_name(vec![row(P, Status::Processed, 3, false)]);
        let changes = vec![change(P, 4, false)];
        let same: BTreeMap<PartitionKey, String> = [(key(P), "1:aaaa".to_owned())].into();
        let other: BTreeMap<PartitionKey, String> = [(key(P), "2:bbbb".to_owned())].into();
        let with_fingerprints = |f| PlanInput {
            fingerprints: Some(f),
            ..input()
        };
        assert!(plan_late(&state, &changes, &with_fingerprints(&same)).is_empty());
        assert_eq!(
            plan_late(&state, &changes, &with_fingerprints(&other)).len(),
            1
        );
    }
}
