//! Every fixture's expected per-partition change versions.

use std::path::{Path, PathBuf};

use latefill_detector::{Error, detect_changes};
use serde::Deserialize;
use url::Url;

/// `../shared/fixtures` beside the repository, or `$LATEFILL_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("LATEFILL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // At run time, not `env!`: a test binary built in another clone that shares
            // the target directory must still find this clone's fixtures.
            let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
            crate_dir.join("../../../shared/fixtures")
        });
    assert!(
        dir.join("tables").is_dir(),
        "fixtures not found at {}: set LATEFILL_FIXTURES to the shared/fixtures directory",
        dir.display()
    );
    dir
}

/// Copies a fixture table into a temporary directory (fixtures are never modified).
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, Url) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join(name);
    copy_dir(&fixtures_dir().join("tables").join(name), &dest);
    let url = Url::from_directory_path(&dest).unwrap();
    (tmp, url)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

#[derive(Deserialize)]
struct Expected {
    table_version: u64,
    partitions: Vec<ExpectedPartition>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct ExpectedPartition {
    partition: String,
    last_change_version: u64,
}

/// Every Spark fixture with an expected answer: its name, the answer, and a copy of
/// the table (removed with the returned directory). There are 7.
fn expected_fixtures() -> Vec<(String, Expected, tempfile::TempDir, Url)> {
    let expected_dir = fixtures_dir().join("expected");
    let fixtures: Vec<_> = std::fs::read_dir(&expected_dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let expected: Expected =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let (tmp, url) = copy_fixture(&name);
            (name, expected, tmp, url)
        })
        .collect();
    assert_eq!(fixtures.len(), 7, "every fixture has an expected answer");
    fixtures
}

#[tokio::test]
async fn every_fixture_matches_its_expected_changes() {
    for (name, expected, _tmp, url) in expected_fixtures() {
        let changes = detect_changes(&url)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(changes.table_version, expected.table_version, "{name}");
        let got: Vec<ExpectedPartition> = changes
            .partitions
            .iter()
            .map(|p| ExpectedPartition {
                partition: p.partition.to_string(),
                last_change_version: p.last_change_version.get(),
            })
            .collect();
        assert_eq!(got, expected.partitions, "{name}");
    }
}

#[tokio::test]
async fn a_cleaned_up_log_says_an_exact_answer_is_impossible() {
    let (_tmp, url) = copy_fixture("checkpoints_vacuumed");
    let changes = detect_changes(&url)
        .with_since_version(Some(2.into()))
        .await
        .unwrap();
    assert!(!changes.exact);
    let reason = changes.inexact_reason.as_deref().unwrap();
    assert!(
        reason.contains("commits 3..=4 were removed by log cleanup"),
        "{reason}"
    );
    // Conservative: everything that changed after 2 is there, none is missed.
    let names: Vec<_> = changes
        .partitions
        .iter()
        .map(|p| p.partition.as_str())
        .collect();
    assert_eq!(
        names,
        ["date=2020-06-01", "date=2020-06-02", "date=2020-06-03"]
    );
    assert!(changes.partitions.iter().all(|p| p.last_change_version > 2));
    assert_eq!(changes.scan.checkpoint_read, Some(5.into()));

    // From version 4 on every commit exists again: exact.
    let changes = detect_changes(&url)
        .with_since_version(Some(4.into()))
        .await
        .unwrap();
    assert!(changes.exact, "{:?}", changes.inexact_reason);
}

#[tokio::test]
async fn since_version_limits_the_answer_to_later_commits() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let all = detect_changes(&url).await.unwrap();
    let since = detect_changes(&url)
        .with_since_version(Some(7.into()))
        .await
        .unwrap();
    let expected: Vec<_> = all
        .partitions
        .iter()
        .filter(|p| p.last_change_version > 7)
        .cloned()
        .collect();
    assert_eq!(since.partitions, expected);
    assert!(!expected.is_empty() && expected.len() < all.partitions.len());
    assert_eq!(since.scan.mode, "since");
}

#[tokio::test]
async fn the_partition_column_is_checked() {
    let (_tmp, url) = copy_fixture("checkpoints");
    let err = detect_changes(&url)
        .with_partition_column("event_time")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotPartitionedBy { .. }), "{err}");
    assert!(err.to_string().contains("[\"date\"]"), "{err}");
}

/// The change history of every fixture written by Spark (checkpoints, a vacuumed and
/// cleaned-up log, column mapping, null and special partition values, change data
/// files) agrees with its expected changes: a partition's last commit in the
/// history is its expected last change, for every change the log still holds; every
/// commit carries its time.
#[tokio::test]
async fn every_fixture_has_a_change_history_that_agrees_with_its_expected_changes() {
    for (name, expected, _tmp, url) in expected_fixtures() {
        let history = latefill_detector::change_history(&url, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            history.table_version.get(),
            expected.table_version,
            "{name}"
        );
        let mut last = std::collections::BTreeMap::new();
        for commit in &history.commits {
            assert!(commit.committed_at.is_some(), "{name}: {commit:?}");
            assert!(commit.version >= history.read_from, "{name}");
            for partition in &commit.partitions {
                last.insert(partition.to_string(), commit.version.get());
            }
        }
        let seen: Vec<ExpectedPartition> = expected
            .partitions
            .into_iter()
            .filter(|p| p.last_change_version >= history.read_from.get())
            .collect();
        let got: Vec<ExpectedPartition> = last
            .into_iter()
            .map(|(partition, last_change_version)| ExpectedPartition {
                partition,
                last_change_version,
            })
            .collect();
        assert_eq!(got, seen, "{name}");
    }
}
