//! Sources partitioned as real tables are: by the date and by other columns, or with
//! values that name no date. Nothing is skipped without a word.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;

use crate::common::*;

/// Appends `rows` device rows for `date` and `region` to a source partitioned by
/// `event_time` and then `region`.
async fn append(ws: &Workspace, date: &str, region: &str, rows: usize) -> u64 {
    let schema = Arc::new(Schema::new(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("full_name", DataType::Utf8, true),
        Field::new("version", DataType::Utf8, true),
        Field::new("event_time", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
    ]));
    let column = |f: &dyn Fn(usize) -> String| -> Arc<StringArray> {
        Arc::new(StringArray::from_iter_values((0..rows).map(f)))
    };
    let batch = RecordBatch::try_new(
        schema,
        vec![
            column(&|i| ["galaxy", "pixel", "iphone"][i % 3].to_owned()),
            column(&|i| format!("device {i}")),
            column(&|i| format!("{}.0", 13 + i % 2)),
            column(&|_| date.to_owned()),
            column(&|_| region.to_owned()),
        ],
    )
    .unwrap();
    let path = ws.source_path();
    std::fs::create_dir_all(&path).unwrap();
    DeltaTable::try_from_url(url_of(&path))
        .await
        .unwrap()
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .with_partition_columns(["event_time", "region"])
        .await
        .unwrap()
        .version()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn names(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["partition"].as_str().unwrap())
        .collect()
}

/// Regression: the planner could not read `event_time=2024-01-01/region=eu` as a
/// date and skipped it silently, so late rows in one region were never processed.
#[tokio::test]
async fn a_late_change_in_one_region_makes_its_whole_date_late() {
    let ws = Workspace::new();
    for date in ["2024-01-01", "2024-01-02"] {
        append(&ws, date, "eu", 30).await;
        append(&ws, date, "us", 40).await;
    }
    for date in ["2024-01-01", "2024-01-02"] {
        let run = json(&ws.run_cli(&["--date", date, "--output", "json"]));
        assert_eq!(run["rows_read"], 70, "both regions of the date: {run}");
    }
    append(&ws, "2024-01-01", "eu", 5).await;

    let detect = json(&ws.latefill(&[
        "detect",
        "--config",
        ws.config.to_str().unwrap(),
        "--date",
        "2024-01-03",
        "--output",
        "json",
    ]));
    assert_eq!(
        names(&detect["late"]),
        ["event_time=2024-01-01"],
        "{detect}"
    );
    append(&ws, "2024-01-03", "us", 10).await;
    let run = json(&ws.run_cli(&["--date", "2024-01-03", "--output", "json"]));
    assert_eq!(
        names(&run["backfilled"]),
        ["event_time=2024-01-01"],
        "{run}"
    );
    assert_eq!(run["backfilled"][0]["rows_read"], 75, "every region: {run}");
    let counts = target_counts(&ws.target_path(), "2024-01-01").await;
    assert_eq!(counts.values().sum::<i64>(), 75);
}

#[tokio::test]
async fn a_partition_value_that_is_no_date_is_reported_not_skipped() {
    let ws = Workspace::new();
    append(&ws, "2024-01-01", "eu", 10).await;
    append(&ws, "01/02/2024", "eu", 10).await;
    let detect = ws.latefill(&[
        "detect",
        "--config",
        ws.config.to_str().unwrap(),
        "--date",
        "2024-01-03",
        "--output",
        "json",
    ]);
    let detect = json(&detect);
    let unrecognised = &detect["detection"]["unrecognised"];
    assert_eq!(
        names(unrecognised),
        ["event_time=01/02/2024/region=eu"],
        "{detect}"
    );
    assert!(
        unrecognised[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a date"),
        "{detect}"
    );
    let text = ws.latefill(&[
        "detect",
        "--config",
        ws.config.to_str().unwrap(),
        "--date",
        "2024-01-03",
    ]);
    assert!(
        stdout(&text).contains("warning: source partition event_time=01/02/2024/region=eu"),
        "{}",
        stdout(&text)
    );
}
