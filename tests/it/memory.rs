//! `--memory-limit` and `transform.memory_limit`: a partition whose aggregation
//! needs more memory than the limit spills and gives the same result; a limit it
//! cannot be processed within fails the partition saying what to raise, and writes
//! nothing; a bad size is a usage error naming it.

use crate::common::*;

const DAY: &str = "2024-01-01";

/// 100,000 groups of three rows each out of 300,000: the groups' hash table alone
/// is several MB. `count` and `sum` of the row numbers do not depend on which row
/// gets which number, so any recomputation gives the same rows.
const MANY_GROUPS: &str = "SELECT rn % 100000 AS g, count(*) AS n, sum(rn) AS s, event_time \
     FROM (SELECT row_number() OVER () AS rn, event_time FROM source) \
     GROUP BY rn % 100000, event_time";

/// A workspace running [`MANY_GROUPS`] over one day of 300,000 rows, with
/// `memory_limit` in its pipeline file when given.
async fn many_groups(memory_limit: Option<&str>) -> Workspace {
    let ws = Workspace::with_sql(MANY_GROUPS);
    if let Some(limit) = memory_limit {
        let text = std::fs::read_to_string(&ws.config).unwrap();
        std::fs::write(&ws.config, format!("{text}memory_limit = \"{limit}\"\n")).unwrap();
    }
    ws.generate(DAY, 300_000, 1).await;
    ws
}

/// The transform recomputed over the whole source with no limit, sorted.
async fn recomputed(ws: &Workspace) -> Vec<String> {
    let sql = MANY_GROUPS.replace("FROM source", "FROM t");
    sorted_lines(&sql_on(&url_of(&ws.source_path()), &sql).await)
}

async fn target_rows(ws: &Workspace) -> Vec<String> {
    sorted_lines(&query(&ws.target_path(), "").await)
}

/// Under a limit well below what the aggregation holds without one, it spills to
/// disk: the run reports a peak within the limit, and the target equals the
/// recomputation. The limit comes from the pipeline file or the command line.
#[tokio::test]
async fn an_aggregation_larger_than_the_limit_spills_and_gives_the_same_result() {
    const LIMIT: u64 = 8 * 1024 * 1024;
    let unbounded = many_groups(None).await;
    let run = json(&unbounded.run_cli(&["--date", DAY, "--format", "json"]));
    let expected = recomputed(&unbounded).await;
    assert_eq!(expected.len(), 100_000);
    assert_eq!(target_rows(&unbounded).await, expected);
    let peak = run["memory_peak"].as_u64().unwrap();
    assert!(peak > LIMIT, "without a limit it holds {peak} bytes: {run}");

    let from_file = many_groups(Some("8MB")).await;
    let from_flag = many_groups(None).await;
    for (ws, extra) in [
        (&from_file, &[][..]),
        (&from_flag, &["--memory-limit", "8MB"][..]),
    ] {
        let out = ws.run_cli(&[&["--date", DAY, "--format", "json"], extra].concat());
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        let run = json(&out);
        let peak = run["memory_peak"].as_u64().unwrap();
        assert!(peak <= LIMIT, "{extra:?}: held {peak} bytes: {run}");
        assert_eq!(target_rows(ws).await, expected, "{extra:?}");
    }
}

/// A limit the partition cannot be processed within: exit 3, the message names the
/// limit and what to raise, nothing is written, the state records the failure and
/// holds no claim; a run with a larger limit then processes it.
#[tokio::test]
async fn a_limit_that_cannot_be_met_fails_the_partition_saying_what_to_raise() {
    let ws = many_groups(None).await;
    let out = ws.run_cli(&["--date", DAY, "--memory-limit", "64KB"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("needs more memory than the limit of 64 KiB allows"),
        "{err}"
    );
    assert!(err.contains("raise --memory-limit"), "{err}");
    assert!(err.contains("Resources exhausted"), "{err}");
    assert!(
        table_version(&ws.target_path()).await.is_none(),
        "the target was written"
    );
    let status = ws.status_json(&ws.config);
    assert_eq!(status[0]["status"], "failed", "{status}");
    let error = status[0]["last_error"].as_str().unwrap();
    assert!(error.contains("needs more memory"), "{error}");

    // JSON output carries the same error, as a data error.
    let out = ws.run_cli(&["--date", DAY, "--memory-limit", "64KB", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let lines = stdout(&out);
    let error = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("error").cloned())
        .unwrap_or_else(|| panic!("no error object in {lines}"));
    assert_eq!(error["kind"], "data", "{error}");
    assert_eq!(error["exit_code"], 3, "{error}");

    let out = ws.run_cli(&["--date", DAY, "--memory-limit", "64MB"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(target_rows(&ws).await, recomputed(&ws).await);
}

/// A size that is not one: a usage error (exit 2) naming the value and the form
/// expected, before anything is read or written.
#[tokio::test]
async fn a_bad_memory_limit_is_a_usage_error_naming_it() {
    let ws = many_groups(None).await;
    for bad in ["0", "lots", "12XB", "1.5.2GB"] {
        let out = ws.run_cli(&["--date", DAY, "--memory-limit", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(bad), "{bad}: {err}");
        assert!(err.contains("256MB"), "{bad}: {err}");
    }
    for (bad, says) in [
        ("\"lots\"", "transform.memory_limit \"lots\""),
        ("0", "transform.memory_limit 0"),
    ] {
        let text = std::fs::read_to_string(&ws.config).unwrap();
        std::fs::write(
            ws.dir.path().join("bad.toml"),
            format!("{text}memory_limit = {bad}\n"),
        )
        .unwrap();
        let out = ws.latefill(&["run", "--config", "bad.toml", "--date", DAY]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{bad}: {}", stderr(&out));
    }
    assert!(table_version(&ws.target_path()).await.is_none());
}
