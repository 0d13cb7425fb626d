//! `status` as an operator reads it: filters by date range and state, and the text
//! table's columns of the last run.

use crate::common::*;

/// Four days: 2024-01-01 processed then late, 2024-01-02 failed (an audit refuses
/// it), 2024-01-03 processed, 2024-01-04 never run.
async fn four_days() -> Workspace {
    let ws = Workspace::new();
    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(
        &ws.config,
        format!(
            "{text}\n[[audit]]\nname = \"not the second\"\n\
             sql = \"SELECT * FROM result WHERE CAST(event_time AS VARCHAR) = '2024-01-02'\"\n"
        ),
    )
    .unwrap();
    for (i, day) in ["2024-01-01", "2024-01-02", "2024-01-03"]
        .iter()
        .enumerate()
    {
        ws.generate(day, 2_000, i as u64).await;
    }
    let config = ws.config.to_str().unwrap();
    let out = ws.latefill(&[
        "backfill",
        "--config",
        config,
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    ws.generate("2024-01-01", 100, 7).await;
    ws.generate("2024-01-04", 100, 8).await;
    ws
}

fn periods(ws: &Workspace, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["status", "--config", ws.config.to_str().unwrap()];
    args.extend_from_slice(filters);
    args.extend_from_slice(&["--format", "json"]);
    json(&ws.latefill(&args))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["period"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn status_filters_by_state_and_date_range() {
    let ws = four_days().await;
    let all = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"];
    assert_eq!(periods(&ws, &[]), all);
    assert_eq!(periods(&ws, &["--state", "failed"]), ["2024-01-02"]);
    assert_eq!(periods(&ws, &["--state", "late"]), ["2024-01-01"]);
    assert_eq!(
        periods(&ws, &["--state", "failed,late"]),
        ["2024-01-01", "2024-01-02"]
    );
    // Late partitions are processed ones too.
    assert_eq!(
        periods(&ws, &["--state", "processed"]),
        ["2024-01-01", "2024-01-03"]
    );
    assert_eq!(periods(&ws, &["--state", "unprocessed"]), ["2024-01-04"]);
    assert!(periods(&ws, &["--state", "processing,stale"]).is_empty());
    assert_eq!(
        periods(&ws, &["--from", "2024-01-02", "--to", "2024-01-03"]),
        ["2024-01-02", "2024-01-03"]
    );
    assert_eq!(periods(&ws, &["--from", "2024-01-03"]), all[2..]);
    assert_eq!(
        periods(&ws, &["--to", "2024-01-02", "--state", "late"]),
        ["2024-01-01"]
    );
}

#[tokio::test]
async fn status_filter_mistakes_are_usage_errors() {
    let ws = four_days().await;
    let config = ws.config.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--from", "2024-01-03", "--to", "2024-01-01"],
            "--from 2024-01-03 is after --to 2024-01-01",
        ),
        (vec!["--state", "lates"], "possible values"),
        (vec!["--from", "2024-13-01"], "2024-13-01"),
    ] {
        let mut all = vec!["status", "--config", config];
        all.extend(&args);
        let out = ws.latefill(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// The text table carries when each row changed and what its last run did; the
/// JSON the same facts.
#[tokio::test]
async fn status_text_shows_the_last_run() {
    let ws = four_days().await;
    let config = ws.config.to_str().unwrap();
    let text = stdout(&ws.latefill(&["status", "--config", config]));
    let header = text.lines().next().unwrap();
    for column in ["updated (UTC)", "took", "rows in", "rows out", "attempts"] {
        assert!(header.contains(column), "{header}");
    }
    let rows = ws.status_json(&ws.config);
    let third = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == "2024-01-03")
        .unwrap();
    let rows_read = third["last_run"]["rows_read"].as_u64().unwrap();
    assert_eq!(rows_read, 2_000, "{third}");
    let line = text
        .lines()
        .find(|l| l.starts_with("event_time=2024-01-03"))
        .unwrap();
    let updated = third["updated_at"].as_str().unwrap();
    // `2024-..-..T10:22:05.123Z` shown as `2024-..-.. 10:22`.
    assert!(line.contains(&updated[..16].replace('T', " ")), "{line}");
    assert!(line.contains(" 2,000 "), "{line}");
    assert!(line.contains(" ms ") || line.contains(" s "), "{line}");
    let failed = text
        .lines()
        .find(|l| l.starts_with("event_time=2024-01-02"))
        .unwrap();
    assert!(
        failed.contains("error: audit not the second failed"),
        "{failed}"
    );
    let never = text
        .lines()
        .find(|l| l.starts_with("event_time=2024-01-04"))
        .unwrap();
    assert!(never.contains("unprocessed"), "{never}");
}
