//! The state table's conformance suite: every test runs unchanged on real Delta tables
//! in a temporary directory, on S3 (moto's server) and on Azure Blob (Azurite), the
//! emulators that `scripts/with-emulators.sh` starts on loopback.

use std::sync::Arc;

use chrono::{DateTime, Duration};
use latefill_core::{Granularity, PartitionDate, PartitionKey, Partitioning, TableVersion};
use latefill_state::{Batch, Completion, Error, Planned, StateTable, Status, TestClock};
use url::Url;

/// Where a test's state table lives.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Local,
    S3,
    Azure,
}

impl Backend {
    /// A new, empty table location, and the temporary directory that holds it (local).
    fn table(self) -> (Option<tempfile::TempDir>, Url) {
        let root = match self {
            Backend::Local => {
                let dir = tempfile::tempdir().unwrap();
                let url = Url::from_directory_path(dir.path().join("state")).unwrap();
                return (Some(dir), url);
            }
            Backend::S3 => emulator("LATEFILL_TEST_S3"),
            Backend::Azure => emulator("LATEFILL_TEST_AZURE"),
        };
        let unique = format!("{:016x}", rand::random::<u64>());
        (
            None,
            Url::parse(&format!("{root}/state-tests/{unique}/state/")).unwrap(),
        )
    }
}

/// The bucket or container an emulator serves, from `scripts/with-emulators.sh`.
fn emulator(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: run the tests through scripts/test.sh, which starts \
             the storage emulators (scripts/with-emulators.sh)"
        )
    })
}

/// Runs each test on every backend: `local::name`, `s3::name`, `azure::name`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Local).await })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::S3).await })*
        }
        mod azure {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Azure).await })*
        }
    };
}

on_every_backend!(
    a_stale_snapshot_never_wins_a_commit,
    claim_then_complete_records_the_source_version,
    a_claim_takes_all_partitions_or_none,
    an_expired_lease_can_be_claimed_again_and_its_old_holder_loses_it,
    a_failure_is_recorded_and_the_partition_can_be_claimed_again,
    a_planned_claim_fails_when_the_row_changed_since_the_plan,
    a_claim_returns_the_row_it_replaced,
    a_handles_transitions_one_after_another_lose_no_other_writers_commit,
    handles_that_found_no_table_both_create_it_and_lose_nothing,
    a_call_left_unpolled_holds_up_no_other,
    the_cursor_is_kept_apart_from_partitions,
    concurrent_writers_lose_no_transition,
    racing_claims_on_one_partition_have_exactly_one_winner,
    pipelines_sharing_a_state_table_never_see_each_others_rows,
    writers_of_two_pipelines_on_one_table_lose_no_transition,
    a_batch_decides_each_partition_on_its_own_terms_in_one_commit,
    racing_batches_never_claim_one_partition_twice,
    a_batch_claiming_at_most_n_fills_itself_past_what_others_took,
    rows_of_an_earlier_partitioning_are_listed_and_kept,
);

/// The tests' pipelines are partitioned by day, in column `p`.
fn days() -> Partitioning {
    Partitioning::new("p", Granularity::Day)
}

/// The partition `n` days after 2024-01-01 (`p=2024-01-01` is `day(0)`).
fn day(n: u64) -> PartitionKey {
    let first = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    days().key(PartitionDate::from(first + chrono::Days::new(n)))
}

fn v(version: u64) -> TableVersion {
    TableVersion::new(version)
}

async fn claim_then_complete_records_the_source_version(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    assert_eq!(state.read().await.unwrap().version, None);
    state.claim(&[day(1)], "run-1").await.unwrap();
    let read = state.read().await.unwrap();
    assert_eq!(read.partitions[&day(1)].status, Status::Processing);
    assert_eq!(read.partitions[&day(1)].attempts, 1);
    state
        .complete(
            &day(1),
            "run-1",
            v(12),
            Some("fp".into()),
            Some("sql:1".into()),
        )
        .await
        .unwrap();
    let read = state.read().await.unwrap();
    let p = &read.partitions[&day(1)];
    assert_eq!(
        (p.status, p.source_version),
        (Status::Processed, Some(v(12)))
    );
    assert_eq!(p.fingerprint.as_deref(), Some("fp"));
    assert_eq!(read.version, Some(v(1)), "one commit per transition");
}

/// Each handle keeps the version it last read or wrote. Another handle's commit since
/// then still decides: a handle never decides on, or commits over, a stale snapshot.
async fn a_stale_snapshot_never_wins_a_commit(backend: Backend) {
    let (_dir, url) = backend.table();
    let a = StateTable::new(url.clone(), "p", days());
    let b = StateTable::new(url, "p", days());
    a.claim(&[day(0)], "run-a").await.unwrap();
    // a's snapshot is version 0; b reads it and commits version 1.
    b.claim(&[day(1)], "run-b").await.unwrap();
    let err = a.claim(&[day(1)], "run-a").await.unwrap_err();
    assert!(
        matches!(&err, Error::Claimed { run_id, .. } if run_id == "run-b"),
        "{err}"
    );
    // a's next commit lands on top of b's: nothing of b's is lost.
    a.complete(&day(0), "run-a", v(3), None, None)
        .await
        .unwrap();
    let read = b.read().await.unwrap();
    assert_eq!(read.version, Some(v(2)));
    assert_eq!(read.partitions[&day(1)].run_id, "run-b");
    assert_eq!(read.partitions[&day(0)].status, Status::Processed);
}

async fn a_claim_takes_all_partitions_or_none(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    state.claim(&[day(10), day(11)], "run-1").await.unwrap();
    let err = state.claim(&[day(12), day(11)], "run-2").await.unwrap_err();
    assert!(
        matches!(&err, Error::Claimed { partition, .. } if *partition == day(11)),
        "{err}"
    );
    let read = state.read().await.unwrap();
    assert!(
        !read.partitions.contains_key(&day(12)),
        "nothing of the refused claim was written"
    );
    assert_eq!(read.partitions[&day(11)].run_id, "run-1");
}

async fn an_expired_lease_can_be_claimed_again_and_its_old_holder_loses_it(backend: Backend) {
    let (_dir, url) = backend.table();
    let clock = Arc::new(TestClock::new(
        DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    ));
    let state = StateTable::new(url, "p", days())
        .with_clock(clock.clone())
        .with_lease(Duration::minutes(10));
    state.claim(&[day(1)], "crashed-run").await.unwrap();

    clock.advance(Duration::minutes(9));
    assert!(matches!(
        state.claim(&[day(1)], "run-2").await,
        Err(Error::Claimed { .. })
    ));

    clock.advance(Duration::minutes(2));
    state.claim(&[day(1)], "run-2").await.unwrap();
    let p = &state.read().await.unwrap().partitions[&day(1)];
    assert_eq!((p.run_id.as_str(), p.attempts), ("run-2", 2));

    let err = state
        .complete(&day(1), "crashed-run", v(5), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    state
        .complete(&day(1), "run-2", v(6), None, None)
        .await
        .unwrap();
}

async fn a_failure_is_recorded_and_the_partition_can_be_claimed_again(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    state.claim(&[day(1)], "run-1").await.unwrap();
    state.fail(&day(1), "run-1", "disk full").await.unwrap();
    let p = &state.read().await.unwrap().partitions[&day(1)];
    assert_eq!(
        (p.status, p.last_error.as_deref()),
        (Status::Failed, Some("disk full"))
    );
    state.claim(&[day(1)], "run-2").await.unwrap();
}

async fn a_planned_claim_fails_when_the_row_changed_since_the_plan(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    state.claim(&[day(1)], "run-0").await.unwrap();
    state
        .complete(&day(1), "run-0", v(3), None, None)
        .await
        .unwrap();
    let planned = state.read().await.unwrap().partitions[&day(1)].clone();

    // Another run reprocesses it after both planned from the same row.
    state
        .claim_if_unchanged(&day(1), "run-a", Some(&planned))
        .await
        .unwrap();
    state
        .complete(&day(1), "run-a", v(7), None, None)
        .await
        .unwrap();
    let err = state
        .claim_if_unchanged(&day(1), "run-b", Some(&planned))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChangedSincePlanned { .. }), "{err}");
    // A partition planned as never processed is claimed once only, too.
    state
        .claim_if_unchanged(&day(2), "run-a", None)
        .await
        .unwrap();
    assert!(
        state
            .claim_if_unchanged(&day(2), "run-b", None)
            .await
            .is_err()
    );
}

/// `claim_one` returns the row its compare-and-swap replaced, with no read of its own:
/// another handle's completion just before is the row returned, and a handle whose
/// snapshot is a commit behind is refused on the latest row, not its own.
async fn a_claim_returns_the_row_it_replaced(backend: Backend) {
    let (_dir, url) = backend.table();
    let a = StateTable::new(url.clone(), "p", days());
    let b = StateTable::new(url, "p", days());
    assert_eq!(a.claim_one(&day(1), "run-a").await.unwrap(), None);
    a.complete(&day(1), "run-a", v(3), None, None)
        .await
        .unwrap();

    let previous = b.claim_one(&day(1), "run-b").await.unwrap().unwrap();
    assert_eq!(
        (
            previous.status,
            previous.source_version,
            previous.run_id.as_str()
        ),
        (Status::Processed, Some(v(3)), "run-a")
    );
    let err = a.claim_one(&day(1), "run-a2").await.unwrap_err();
    assert!(
        matches!(&err, Error::Claimed { run_id, .. } if run_id == "run-b"),
        "{err}"
    );
    let read = a.read().await.unwrap();
    assert_eq!(read.version, Some(v(2)), "the refused claim wrote nothing");
    assert_eq!(read.partitions[&day(1)].run_id, "run-b");
}

/// A handle's next transition after its own commit is put straight after it, on the
/// rows it wrote: another handle's commit in between takes that version, and the
/// transition is then decided again on the latest rows, losing none of the other's.
async fn a_handles_transitions_one_after_another_lose_no_other_writers_commit(backend: Backend) {
    let (_dir, url) = backend.table();
    let a = StateTable::new(url.clone(), "p", days());
    let b = StateTable::new(url.clone(), "p", days());
    a.claim_one(&day(0), "run-a").await.unwrap();
    a.claim_one(&day(1), "run-a").await.unwrap();
    a.complete(&day(1), "run-a", v(7), None, None)
        .await
        .unwrap();
    a.claim_one(&day(2), "run-a").await.unwrap();
    // b reads version 3 and takes version 4, which a's next commit was to be.
    b.claim_one(&day(3), "run-b").await.unwrap();
    a.complete(&day(2), "run-a", v(8), None, None)
        .await
        .unwrap();
    let err = a.claim_one(&day(3), "run-a").await.unwrap_err();
    assert!(
        matches!(&err, Error::Claimed { run_id, .. } if run_id == "run-b"),
        "{err}"
    );

    let read = StateTable::new(url, "p", days()).read().await.unwrap();
    assert_eq!(read.version, Some(v(5)), "one commit per transition");
    let row = |n: u64| {
        let p = &read.partitions[&day(n)];
        (p.status, p.source_version, p.run_id.clone(), p.attempts)
    };
    assert_eq!(row(0), (Status::Processing, None, "run-a".into(), 1));
    assert_eq!(row(1), (Status::Processed, Some(v(7)), "run-a".into(), 1));
    assert_eq!(row(2), (Status::Processed, Some(v(8)), "run-a".into(), 1));
    assert_eq!(row(3), (Status::Processing, None, "run-b".into(), 1));
}

/// A handle that found no table creates it at its next transition without looking
/// again; when another handle created it meanwhile, the create fails and the
/// transition is decided again on the table there.
async fn handles_that_found_no_table_both_create_it_and_lose_nothing(backend: Backend) {
    let (_dir, url) = backend.table();
    let a = StateTable::new(url.clone(), "p", days());
    let b = StateTable::new(url.clone(), "p", days());
    assert_eq!(a.read().await.unwrap().version, None);
    assert_eq!(b.read().await.unwrap().version, None);
    a.claim_one(&day(1), "run-a").await.unwrap();
    let err = b.claim_one(&day(1), "run-b").await.unwrap_err();
    assert!(
        matches!(&err, Error::Claimed { run_id, .. } if run_id == "run-a"),
        "{err}"
    );
    b.claim_one(&day(2), "run-b").await.unwrap();

    let read = StateTable::new(url, "p", days()).read().await.unwrap();
    assert_eq!(read.version, Some(v(1)));
    assert_eq!(read.partitions[&day(1)].run_id, "run-a");
    assert_eq!(read.partitions[&day(2)].run_id, "run-b");
}

/// A call on a handle that was started and then left unpolled (a backfill's claim in
/// flight while Ctrl-C gives the run's claims back) holds up no other call on it, even
/// mid-way through bringing the handle's snapshot to its last commit.
async fn a_call_left_unpolled_holds_up_no_other(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    state.claim_one(&day(1), "run-1").await.unwrap();
    state.claim_one(&day(2), "run-1").await.unwrap();
    let mut read = Box::pin(state.read());
    // Polled once (a timeout polls first): the read starts, and is never polled again.
    let _ = tokio::time::timeout(std::time::Duration::ZERO, &mut read).await;

    let released = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        state.release(&day(1), "run-1", "interrupted"),
    )
    .await;
    assert!(
        released.is_ok(),
        "the release waited for the read left unpolled"
    );
    released.unwrap().unwrap();
    drop(read);
    let rows = state.read().await.unwrap().partitions;
    assert_eq!(rows[&day(1)].status, Status::Failed);
    assert_eq!(rows[&day(2)].status, Status::Processing);
}

async fn the_cursor_is_kept_apart_from_partitions(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    state.save_cursor("{\"version\":7}".into()).await.unwrap();
    state.claim(&[day(1)], "run-1").await.unwrap();
    let read = state.read().await.unwrap();
    assert_eq!(read.cursor.as_deref(), Some("{\"version\":7}"));
    assert_eq!(read.partitions.len(), 1);
}

/// Runs WRITERS tasks, each making CLAIMS claim+complete pairs of its own partitions
/// (`day(CLAIMS * writer + claim)`, completed at version `100 * writer + claim`);
/// writer `w` works for `pipeline_of(w)`.
async fn count_transitions(url: &Url, pipeline_of: fn(usize) -> &'static str) {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let state =
            StateTable::new(url.clone(), pipeline_of(w), days()).with_owner(format!("writer-{w}"));
        tasks.push(tokio::spawn(async move {
            for c in 0..CLAIMS {
                let partition = day((w * CLAIMS + c) as u64);
                let run = format!("run-{w}-{c}");
                state
                    .claim(std::slice::from_ref(&partition), &run)
                    .await
                    .unwrap();
                state
                    .complete(&partition, &run, v((w * 100 + c) as u64), None, None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

const WRITERS: usize = 4;
const CLAIMS: usize = 3;

/// The compare-and-swap counter pattern: N writers making M claim+complete pairs each
/// must end with exactly 2*N*M commits and every transition kept.
async fn concurrent_writers_lose_no_transition(backend: Backend) {
    let (_dir, url) = backend.table();
    count_transitions(&url, |_| "p").await;
    let read = StateTable::new(url, "p", days()).read().await.unwrap();
    assert_eq!(read.partitions.len(), WRITERS * CLAIMS);
    for w in 0..WRITERS {
        for c in 0..CLAIMS {
            let p = &read.partitions[&day((w * CLAIMS + c) as u64)];
            let expected = v((w * 100 + c) as u64);
            assert_eq!(
                (p.status, p.source_version),
                (Status::Processed, Some(expected)),
                "{}",
                p.partition
            );
        }
    }
    assert_eq!(read.version, Some(v((2 * WRITERS * CLAIMS - 1) as u64)));
}

/// Many runs racing for the same partition: exactly one wins.
///
/// Regression: on a table that did not exist yet, a run that decided on "no table"
/// used to commit on top of the table a competitor had just created, so two runs
/// both claimed the partition.
async fn racing_claims_on_one_partition_have_exactly_one_winner(backend: Backend) {
    let (_dir, url) = backend.table();
    let mut tasks = Vec::new();
    for w in 0..5 {
        let state = StateTable::new(url.clone(), "p", days());
        tasks.push(tokio::spawn(async move {
            state.claim(&[day(20)], &format!("run-{w}")).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(Error::Claimed { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(wins, 1);
}

/// Regression: rows were keyed by partition alone, so a second pipeline on the same
/// state table saw the first one's rows as its own and processed nothing.
async fn pipelines_sharing_a_state_table_never_see_each_others_rows(backend: Backend) {
    let (_dir, url) = backend.table();
    let a = StateTable::new(url.clone(), "a", days());
    let b = StateTable::new(url.clone(), "b", days());
    let p = [day(1)];
    a.claim(&p, "run-a").await.unwrap();
    // The same partition of another pipeline is not claimed by a's lease.
    b.claim(&p, "run-b").await.unwrap();
    a.complete(&p[0], "run-a", v(7), None, None).await.unwrap();
    a.save_cursor("{\"cursor\":\"a\"}".into()).await.unwrap();
    let (read_a, read_b) = (a.read().await.unwrap(), b.read().await.unwrap());
    assert_eq!(read_a.partitions[&p[0]].status, Status::Processed);
    assert_eq!(read_b.partitions[&p[0]].status, Status::Processing);
    assert_eq!(read_b.partitions[&p[0]].run_id, "run-b");
    assert_eq!(read_a.cursor.as_deref(), Some("{\"cursor\":\"a\"}"));
    assert_eq!(read_b.cursor, None, "cursors are per pipeline");
    // b's transitions write a's rows back as they were.
    b.fail(&p[0], "run-b", "boom").await.unwrap();
    assert_eq!(a.read().await.unwrap().partitions, read_a.partitions);
    // A pipeline that never wrote has no rows.
    let c = StateTable::new(url, "c", days()).read().await.unwrap();
    assert!(c.partitions.is_empty() && c.cursor.is_none());
}

/// The counter pattern across pipelines: writers of two pipelines interleave on one
/// table and lose nothing; they contend only in the compare-and-swap.
async fn writers_of_two_pipelines_on_one_table_lose_no_transition(backend: Backend) {
    let (_dir, url) = backend.table();
    count_transitions(&url, |w| ["a", "b"][w % 2]).await;
    for (pipeline, parity) in [("a", 0), ("b", 1)] {
        let read = StateTable::new(url.clone(), pipeline, days())
            .read()
            .await
            .unwrap();
        let expected: Vec<PartitionKey> = (0..WRITERS)
            .filter(|w| w % 2 == parity)
            .flat_map(|w| (0..CLAIMS).map(move |c| day((w * CLAIMS + c) as u64)))
            .collect();
        assert_eq!(
            read.partitions.keys().cloned().collect::<Vec<_>>(),
            expected,
            "{pipeline}"
        );
        assert!(
            read.partitions
                .values()
                .all(|p| p.status == Status::Processed)
        );
        assert_eq!(read.version, Some(v((2 * WRITERS * CLAIMS - 1) as u64)));
    }
}

fn done(partition: &PartitionKey, source_version: u64) -> Completion {
    Completion {
        partition: partition.clone(),
        source_version: v(source_version),
        fingerprint: Some(format!("fp{source_version}")),
        transform: Some("sql:1".into()),
        detail: Some(format!("{{\"rows_read\":{source_version}}}")),
    }
}

fn planned(partition: &PartitionKey, seen: Option<&latefill_state::PartitionState>) -> Planned {
    Planned {
        partition: partition.clone(),
        seen: seen.cloned(),
    }
}

/// One batch completes, releases and claims: a partition that cannot be claimed or
/// completed is refused alone, the rest lands, all in one commit.
async fn a_batch_decides_each_partition_on_its_own_terms_in_one_commit(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    let [finished, back, other, moved, new] = [1, 2, 3, 4, 5].map(day);
    state
        .claim(&[finished.clone(), back.clone()], "run-1")
        .await
        .unwrap();
    state
        .claim(std::slice::from_ref(&other), "run-2")
        .await
        .unwrap();
    state
        .claim(std::slice::from_ref(&moved), "run-0")
        .await
        .unwrap();
    state
        .complete(&moved, "run-0", v(1), None, None)
        .await
        .unwrap();
    let before = state.read().await.unwrap();
    let moved_as_planned = before.partitions[&moved].clone();
    // `moved` changes after the plan: another run reprocesses it.
    state
        .claim(std::slice::from_ref(&moved), "run-3")
        .await
        .unwrap();
    state
        .complete(&moved, "run-3", v(2), None, None)
        .await
        .unwrap();
    let version = state.read().await.unwrap().version.unwrap();

    let batch = Batch {
        complete: vec![done(&finished, 5), done(&other, 5)],
        release: vec![planned(&back, None)],
        claim: vec![
            planned(&new, None),
            // Planned while run-2 held it, and still held.
            planned(&other, Some(&before.partitions[&other])),
            planned(&moved, Some(&moved_as_planned)),
        ],
        ..Batch::default()
    };
    let outcome = state.commit_batch("run-1", &batch).await.unwrap();
    assert_eq!(outcome.completed, std::slice::from_ref(&finished));
    assert_eq!(outcome.claimed, std::slice::from_ref(&new));
    let refused: Vec<_> = outcome
        .refused
        .iter()
        .map(|e| e.partition().unwrap())
        .collect();
    assert_eq!(refused, [&other, &other, &moved], "{:?}", outcome.refused);
    assert!(matches!(outcome.refused[0], Error::LeaseLost { .. }));
    assert!(matches!(outcome.refused[1], Error::Claimed { .. }));
    assert!(matches!(
        outcome.refused[2],
        Error::ChangedSincePlanned { .. }
    ));

    let read = state.read().await.unwrap();
    assert_eq!(
        read.version,
        Some(v(version.get() + 1)),
        "one commit for the batch"
    );
    let row = &read.partitions[&finished];
    assert_eq!(
        (row.status, row.source_version),
        (Status::Processed, Some(v(5)))
    );
    assert_eq!(row.fingerprint.as_deref(), Some("fp5"));
    assert!(
        !read.partitions.contains_key(&back),
        "released as planned: no row"
    );
    assert_eq!(read.partitions[&new].run_id, "run-1");
    assert_eq!(read.partitions[&other].run_id, "run-2");
    assert_eq!(read.partitions[&moved].source_version, Some(v(2)));
}

/// A batch that lists more candidates than it claims (`claim_at_most`) skips those
/// another run took since the plan, claims the next free ones, and leaves the rest as
/// they are, unreached.
async fn a_batch_claiming_at_most_n_fills_itself_past_what_others_took(backend: Backend) {
    let (_dir, url) = backend.table();
    let state = StateTable::new(url, "p", days());
    let candidates: Vec<PartitionKey> = (0..6).map(day).collect();
    // Another run holds days 0 and 1 when the plan is made, and processes day 0
    // after it.
    state.claim(&candidates[..2], "run-2").await.unwrap();
    let plan = state.read().await.unwrap();
    state
        .complete(&candidates[0], "run-2", v(3), None, None)
        .await
        .unwrap();
    let version = state.read().await.unwrap().version.unwrap();

    let batch = Batch {
        claim: candidates
            .iter()
            .map(|p| planned(p, plan.partitions.get(p)))
            .collect(),
        claim_at_most: Some(2),
        ..Batch::default()
    };
    let outcome = state.commit_batch("run-1", &batch).await.unwrap();

    assert_eq!(outcome.claimed, candidates[2..4]);
    assert_eq!(outcome.unreached, candidates[4..]);
    assert!(matches!(
        outcome.refused[..],
        [Error::ChangedSincePlanned { .. }, Error::Claimed { .. }]
    ));
    let read = state.read().await.unwrap();
    assert_eq!(read.version, Some(v(version.get() + 1)), "one commit");
    assert_eq!(read.partitions[&candidates[0]].status, Status::Processed);
    assert_eq!(read.partitions[&candidates[1]].run_id, "run-2");
    for p in &candidates[2..4] {
        assert_eq!(read.partitions[p].run_id, "run-1", "{p}");
        assert_eq!(read.partitions[p].status, Status::Processing, "{p}");
    }
    for p in &candidates[4..] {
        assert!(!read.partitions.contains_key(p), "{p} left as it was");
    }
}

/// Workers claiming overlapping batches at once: every partition is claimed by
/// exactly one of them, and each learns which ones it got.
async fn racing_batches_never_claim_one_partition_twice(backend: Backend) {
    let (_dir, url) = backend.table();
    let partitions: Vec<PartitionKey> = (0..12).map(day).collect();
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            let state = StateTable::new(url.clone(), "p", days());
            // Each worker wants 6 of the 12, overlapping its neighbours'.
            let wanted: Vec<Planned> = (0..6)
                .map(|i| planned(&partitions[(w * 3 + i) % 12], None))
                .collect();
            tokio::spawn(async move {
                let batch = Batch {
                    claim: wanted,
                    ..Batch::default()
                };
                (
                    format!("run-{w}"),
                    state
                        .commit_batch(&format!("run-{w}"), &batch)
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut winners = std::collections::BTreeMap::new();
    for task in tasks {
        let (run, outcome) = task.await.unwrap();
        for p in outcome.claimed {
            assert!(
                winners.insert(p.clone(), run.clone()).is_none(),
                "{p} claimed twice"
            );
        }
    }
    assert_eq!(
        winners.len(),
        12,
        "every partition was wanted by two workers"
    );
    let read = StateTable::new(url, "p", days()).read().await.unwrap();
    for (p, run) in &winners {
        assert_eq!(&read.partitions[p].run_id, run, "{p}");
    }
}

/// A pipeline whose partitioning changed (here from days to hours) reads its old
/// rows as naming none of its partitions: they are listed, never planned, and its
/// transitions write them back unchanged, so going back to days finds them again.
async fn rows_of_an_earlier_partitioning_are_listed_and_kept(backend: Backend) {
    let (_dir, url) = backend.table();
    let daily = StateTable::new(url.clone(), "p", days());
    daily.claim(&[day(0), day(1)], "run-1").await.unwrap();
    daily
        .complete(&day(0), "run-1", v(4), None, None)
        .await
        .unwrap();
    daily.save_cursor("{\"version\":4}".into()).await.unwrap();
    let before = daily.read().await.unwrap();

    let hours = Partitioning::new("p", Granularity::Hour);
    let hourly = StateTable::new(url.clone(), "p", hours.clone());
    let read = hourly.read().await.unwrap();
    assert!(read.partitions.is_empty());
    assert_eq!(read.unrecognised, [day(0).to_string(), day(1).to_string()]);
    assert_eq!(
        read.cursor, before.cursor,
        "the cursor is the pipeline's, whatever its partitioning"
    );
    let hour = hours.key(PartitionDate::parse_as(Granularity::Hour, "2024-01-01T05").unwrap());
    hourly
        .claim(std::slice::from_ref(&hour), "run-2")
        .await
        .unwrap();
    assert_eq!(hourly.read().await.unwrap().partitions.len(), 1);

    let read = daily.read().await.unwrap();
    assert_eq!(read.partitions, before.partitions, "kept as they were");
    assert_eq!(read.unrecognised, [hour.to_string()]);
}
