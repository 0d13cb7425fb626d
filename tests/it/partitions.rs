//! Sources partitioned as real tables are: by the date and by other columns, or with
//! values that name no date. Nothing is skipped without a word.

use std::sync::Arc;

use deltalake::arrow::array::{AsArray, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

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
    append_batch(&ws.source_path(), batch, &["event_time", "region"]).await
}

/// Asserts that `latefill run --date <date>` reprocesses exactly the late `day`,
/// leaving its `rows` rows in the target: from its `Some(late)` appended rows (in
/// whichever sub-partition they landed) by an incremental update, or from all its
/// rows (`None`: a replace, which reads less when the partition is tiny).
async fn assert_run_backfills(ws: &Workspace, date: &str, day: &str, rows: i64, late: Option<i64>) {
    let run = json(&ws.run_cli(&["--date", date, "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        [format!("event_time={day}")],
        "{run}"
    );
    let (strategy, read) = match late {
        Some(late) => ("incremental", late),
        None => ("replace", rows),
    };
    assert_eq!(run["backfilled"][0]["strategy"], strategy, "{run}");
    assert_eq!(run["backfilled"][0]["rows_read"], read, "{run}");
    let counts = target_counts(&ws.target_path(), day).await;
    assert_eq!(counts.values().sum::<i64>(), rows);
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

    let detect = ws.detect_json(&ws.config, "2024-01-03");
    assert_eq!(
        partitions(&detect["late"]),
        ["event_time=2024-01-01"],
        "{detect}"
    );
    append(&ws, "2024-01-03", "us", 10).await;
    assert_run_backfills(&ws, "2024-01-03", "2024-01-01", 75, Some(5)).await;
}

#[tokio::test]
async fn a_partition_value_that_is_no_date_is_reported_not_skipped() {
    let ws = Workspace::new();
    append(&ws, "2024-01-01", "eu", 10).await;
    append(&ws, "01/02/2024", "eu", 10).await;
    let detect = ws.detect_json(&ws.config, "2024-01-03");
    let unrecognised = &detect["detection"]["unrecognised"];
    assert_eq!(
        partitions(unrecognised),
        ["event_time=01/02/2024/region=eu"],
        "{detect}"
    );
    assert!(
        unrecognised[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a calendar date written YYYY-MM-DD"),
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

/// An hourly pipeline as `latefill init --hourly` writes it, fed by `latefill
/// generate`, through the CLI: hours are partitions, a late hour is reprocessed.
#[tokio::test]
async fn an_hourly_pipeline_reprocesses_a_late_hour() {
    let ws = Workspace::new();
    let init = ws.latefill(&["init", "--hourly", "--path", "hourly.toml"]);
    assert!(init.status.success(), "{}", stderr(&init));
    assert!(
        stdout(&init).contains("--date YYYY-MM-DDTHH"),
        "{}",
        stdout(&init)
    );
    let generate = |hour: &str, rows: &str, seed: &str| {
        let out = ws.latefill(&[
            "generate",
            "--table",
            "latefill-demo/devices_hourly",
            "--date",
            hour,
            "--rows",
            rows,
            "--seed",
            seed,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let run = |hour: &str| {
        let out = ws.latefill(&[
            "run",
            "--config",
            "hourly.toml",
            "--date",
            hour,
            "--output",
            "json",
        ]);
        json(&out)
    };
    for (i, hour) in ["2024-01-03T00", "2024-01-03T01", "2024-01-03T02"]
        .iter()
        .enumerate()
    {
        generate(hour, "200", &i.to_string());
        assert_eq!(run(hour)["partition"], format!("event_time={hour}"));
    }
    generate("2024-01-03T01", "30", "9");
    generate("2024-01-03T03", "200", "3");
    let outcome = run("2024-01-03T03");
    assert_eq!(
        partitions(&outcome["backfilled"]),
        ["event_time=2024-01-03T01"],
        "{outcome}"
    );
    let target = ws.dir.path().join("latefill-demo/devices_hourly_counts");
    assert_eq!(
        target_counts(&target, "2024-01-03T01").await,
        expected_counts("2024-01-03T01", &[(200, 1), (30, 9)])
    );
    for (hour, seed) in [
        ("2024-01-03T00", 0),
        ("2024-01-03T02", 2),
        ("2024-01-03T03", 3),
    ] {
        assert_eq!(
            target_counts(&target, hour).await,
            expected_counts(hour, &[(200, seed)]),
            "{hour}"
        );
    }

    // A day is no hour: a usage error that says what an hour looks like.
    let out = ws.latefill(&["run", "--config", "hourly.toml", "--date", "2024-01-03"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("YYYY-MM-DDTHH"), "{}", stderr(&out));
}

/// `rows` devices of two types whose `event_time` is `event_time` (any type).
fn devices_at(rows: usize, event_time: deltalake::arrow::array::ArrayRef) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("version", DataType::Utf8, true),
        Field::new("event_time", event_time.data_type().clone(), true),
    ]));
    let kinds = StringArray::from_iter_values((0..rows).map(|i| ["a", "b"][i % 2]));
    let versions = StringArray::from_iter_values((0..rows).map(|_| "1.0"));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(kinds), Arc::new(versions), event_time],
    )
    .unwrap()
}

/// A source whose partition column is a DATE, not a string.
#[tokio::test]
async fn a_date_typed_partition_column_works_like_a_string_one() {
    use deltalake::arrow::array::Date32Array;
    let ws = Workspace::new();
    let append = |date: &'static str, rows: usize| {
        let path = ws.source_path();
        async move {
            let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
            let days =
                (day - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
            let batch = devices_at(rows, Arc::new(Date32Array::from(vec![days; rows])));
            append_batch(&path, batch, &["event_time"]).await;
        }
    };
    append("2024-01-01", 10).await;
    append("2024-01-02", 12).await;
    for date in ["2024-01-01", "2024-01-02"] {
        let run = json(&ws.run_cli(&["--date", date, "--output", "json"]));
        assert_eq!(run["partition"], format!("event_time={date}"), "{run}");
    }
    append("2024-01-01", 4).await;
    append("2024-01-03", 6).await;
    assert_run_backfills(&ws, "2024-01-03", "2024-01-01", 14, None).await;
}

/// Devices in the target with `event_time` in `[from, to)` (timestamps).
async fn devices_between(target: &std::path::Path, from: &str, to: &str) -> i64 {
    let condition = format!("event_time >= TIMESTAMP '{from}' AND event_time < TIMESTAMP '{to}'");
    devices_where(target, &condition).await
}

/// The sum of `devices` over the target's rows where `condition` holds.
async fn devices_where(target: &std::path::Path, condition: &str) -> i64 {
    let batches = query(target, &format!("WHERE {condition}")).await;
    batches
        .iter()
        .map(|b| {
            let devices = b.column_by_name("devices").unwrap();
            deltalake::arrow::compute::sum(
                devices.as_primitive::<deltalake::arrow::datatypes::Int64Type>(),
            )
            .unwrap_or(0)
        })
        .sum()
}

/// A source partitioned by a TIMESTAMP, several timestamps an hour, processed by an
/// hourly pipeline: an hour is every timestamp in it.
#[tokio::test]
async fn an_hourly_pipeline_over_a_timestamp_column_takes_every_timestamp_of_the_hour() {
    use deltalake::arrow::array::TimestampMicrosecondArray;
    let ws = Workspace::new();
    let text = std::fs::read_to_string(&ws.config).unwrap().replace(
        "partition_column = \"event_time\"\n",
        "partition_column = \"event_time\"\ngranularity = \"hour\"\n",
    );
    std::fs::write(&ws.config, text).unwrap();
    let append = |at: &'static str, rows: usize| {
        let path = ws.source_path();
        async move {
            let micros = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_micros();
            let at = TimestampMicrosecondArray::from(vec![micros; rows]).with_timezone("UTC");
            let batch = devices_at(rows, Arc::new(at));
            append_batch(&path, batch, &["event_time"]).await;
        }
    };
    append("2024-01-03 05:00:00", 10).await;
    append("2024-01-03 05:30:00", 12).await;
    append("2024-01-03 06:00:00", 8).await;
    let run = json(&ws.run_cli(&["--date", "2024-01-03T05", "--output", "json"]));
    assert_eq!(run["partition"], "event_time=2024-01-03T05", "{run}");
    assert_eq!(run["rows_read"], 22, "both timestamps of the hour: {run}");
    json(&ws.run_cli(&["--date", "2024-01-03T06", "--output", "json"]));

    // A late timestamp inside hour 05, then the next hour's run.
    append("2024-01-03 05:45:00", 5).await;
    append("2024-01-03 07:10:00", 3).await;
    let detect = ws.detect_json(&ws.config, "2024-01-03T07");
    assert_eq!(
        partitions(&detect["late"]),
        ["event_time=2024-01-03T05"],
        "{detect}"
    );
    let run = json(&ws.run_cli(&["--date", "2024-01-03T07", "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-01-03T05"],
        "{run}"
    );
    assert_eq!(run["backfilled"][0]["rows_read"], 27, "{run}");
    let target = ws.target_path();
    let hour = |h: u32| {
        (
            format!("2024-01-03 {h:02}:00:00"),
            format!("2024-01-03 {:02}:00:00", h + 1),
        )
    };
    let count = |h| {
        let (from, to) = hour(h);
        let target = target.clone();
        async move { devices_between(&target, &from, &to).await }
    };
    assert_eq!(count(5).await, 27);
    assert_eq!(count(6).await, 8);
    assert_eq!(count(7).await, 3);
    // Running the hour again replaces it: nothing is counted twice.
    json(&ws.run_cli(&["--date", "2024-01-03T05", "--output", "json"]));
    assert_eq!(count(5).await, 27);
}

/// Appends `rows` devices at `date` hour `hour` to a source partitioned by a DATE
/// `event_date` and an integer `event_hour`, as Hive-style hourly tables are.
async fn append_split_hour(ws: &Workspace, date: &str, hour: i32, rows: usize) {
    use deltalake::arrow::array::{Date32Array, Int32Array};
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    let days = (day - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
    let schema = Arc::new(Schema::new(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("version", DataType::Utf8, true),
        Field::new("event_date", DataType::Date32, true),
        Field::new("event_hour", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| ["a", "b"][i % 2]),
            )),
            Arc::new(StringArray::from_iter_values((0..rows).map(|_| "1.0"))),
            Arc::new(Date32Array::from(vec![days; rows])),
            Arc::new(Int32Array::from(vec![hour; rows])),
        ],
    )
    .unwrap();
    append_batch(&ws.source_path(), batch, &["event_date", "event_hour"]).await;
}

/// Devices in the target's `event_date`/`event_hour` partition.
async fn devices_in_hour(ws: &Workspace, date: &str, hour: i32) -> i64 {
    let condition = format!("event_date = DATE '{date}' AND event_hour = {hour}");
    devices_where(&ws.target_path(), &condition).await
}

/// An hour kept in two columns, the day and the hour of the day (`source.hour_column`):
/// each hour is a partition, a late hour is found and reprocessed alone, an hour
/// value that is no hour is a warning, and `--date` takes `YYYY-MM-DDTHH`.
#[tokio::test]
async fn an_hour_split_over_a_day_column_and_an_hour_column() {
    let ws = Workspace::new();
    let text = std::fs::read_to_string(&ws.config)
        .unwrap()
        .replace(
            "partition_column = \"event_time\"\n",
            "partition_column = \"event_date\"\ngranularity = \"hour\"\nhour_column = \"event_hour\"\n",
        )
        .replace("event_time", "event_date, event_hour");
    std::fs::write(&ws.config, text).unwrap();
    append_split_hour(&ws, "2024-01-03", 5, 10).await;
    append_split_hour(&ws, "2024-01-03", 6, 8).await;
    append_split_hour(&ws, "2024-01-03", 23, 4).await;
    for (date, rows) in [
        ("2024-01-03T05", 10),
        ("2024-01-03T06", 8),
        ("2024-01-03T23", 4),
    ] {
        let run = json(&ws.run_cli(&["--date", date, "--output", "json"]));
        let (day, hour) = date.split_once('T').unwrap();
        assert_eq!(
            run["partition"],
            format!("event_date={day}/event_hour={hour}"),
            "{run}"
        );
        assert_eq!(run["rows_read"], rows, "only that hour of the day: {run}");
    }

    // Late rows for 05, and the first hour of the next day.
    append_split_hour(&ws, "2024-01-03", 5, 3).await;
    append_split_hour(&ws, "2024-01-04", 0, 2).await;
    let detect = ws.detect_json(&ws.config, "2024-01-04T00");
    assert_eq!(
        partitions(&detect["late"]),
        ["event_date=2024-01-03/event_hour=05"],
        "{detect}"
    );
    let run = json(&ws.run_cli(&["--date", "2024-01-04T00", "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_date=2024-01-03/event_hour=05"],
        "{run}"
    );
    assert_eq!(devices_in_hour(&ws, "2024-01-03", 5).await, 13);
    assert_eq!(devices_in_hour(&ws, "2024-01-03", 6).await, 8);
    assert_eq!(devices_in_hour(&ws, "2024-01-03", 23).await, 4);
    assert_eq!(devices_in_hour(&ws, "2024-01-04", 0).await, 2);
    // The status lists hours in time order, across midnight.
    let status = ws.status_json(&ws.config);
    assert_eq!(
        partitions(&status),
        [
            "event_date=2024-01-03/event_hour=05",
            "event_date=2024-01-03/event_hour=06",
            "event_date=2024-01-03/event_hour=23",
            "event_date=2024-01-04/event_hour=00",
        ],
        "{status}"
    );

    // An hour value that is no hour is reported, not skipped silently.
    append_split_hour(&ws, "2024-01-03", 24, 1).await;
    let detect = ws.detect_json(&ws.config, "2024-01-04T01");
    let unrecognised = detect["detection"]["unrecognised"].to_string();
    assert!(
        unrecognised.contains("event_hour=24") && unrecognised.contains("not an hour"),
        "{detect}"
    );
}

/// `kind` rows of an integer day (`day=20240503`), as Hive and Spark tables often
/// store their partitions.
fn int_day_rows(day: i32, kinds: &[&str]) -> deltalake::arrow::array::RecordBatch {
    use deltalake::arrow::array::{Int32Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, true),
            Field::new("day", DataType::Int32, true),
        ])),
        vec![
            std::sync::Arc::new(StringArray::from(kinds.to_vec())),
            std::sync::Arc::new(Int32Array::from(vec![day; kinds.len()])),
        ],
    )
    .unwrap()
}

/// A source partitioned by an integer day: refused until the pipeline declares the
/// format (nothing written), then run, named, detected late and reprocessed in it.
#[tokio::test]
async fn an_integer_day_partition_is_processed_in_its_declared_format() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("events");
    append_batch(&source, int_day_rows(20240502, &["a", "b", "a"]), &["day"]).await;
    append_batch(&source, int_day_rows(20240503, &["b"]), &["day"]).await;
    let config = dir.path().join("pipeline.toml");
    let pipeline = |format: &str| {
        format!(
            "name = \"events_daily\"\n\
             [source]\ntable = \"events\"\npartition_column = \"day\"\n{format}\n\
             [target]\ntable = \"events_daily\"\n[state]\ntable = \"state\"\n\
             [transform]\nsql = \"SELECT kind, count(*) AS n, day FROM source GROUP BY kind, day\"\n"
        )
    };
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        latefill_in(dir.path(), &all)
    };

    std::fs::write(&config, pipeline("")).unwrap();
    let out = run(&["--date", "2024-05-03"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for word in ["\"day\"", "Int32", "partition_format = \"%Y%m%d\""] {
        assert!(err.contains(word), "{word} not in {err}");
    }
    assert!(!dir.path().join("state").exists() && !dir.path().join("events_daily").exists());

    std::fs::write(&config, pipeline("partition_format = \"%Y%m%d\"")).unwrap();
    let report = json(&run(&["--date", "2024-05-02", "--output", "json"]));
    assert_eq!(report["partition"], "day=20240502");
    assert_eq!(report["period"], "2024-05-02");
    assert_eq!(report["rows_read"], 3);
    // The stored form, and the name, are taken too.
    let report = json(&run(&["--date", "20240503", "--output", "json"]));
    assert_eq!(report["partition"], "day=20240503");
    let out = run(&["--date", "day=20240503", "--no-backfill"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Late rows for 2024-05-02: found and reprocessed by the next day's run.
    append_batch(&source, int_day_rows(20240502, &["c"]), &["day"]).await;
    let report = json(&run(&[
        "--date",
        "2024-05-04",
        "--allow-empty",
        "--output",
        "json",
    ]));
    assert_eq!(partitions(&report["late"]), ["day=20240502"]);
    assert_eq!(partitions(&report["backfilled"]), ["day=20240502"]);

    let target = dir.path().join("events_daily");
    let rows = query(&target, "ORDER BY day, kind").await;
    let text = deltalake::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    let expected = "\
+------+---+----------+
| kind | n | day      |
+------+---+----------+
| a    | 2 | 20240502 |
| b    | 1 | 20240502 |
| c    | 1 | 20240502 |
| b    | 1 | 20240503 |
+------+---+----------+";
    assert_eq!(text, expected);
    let status = json(&latefill_in(
        dir.path(),
        &[
            "status",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ],
    ));
    let names: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partition"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["day=20240502", "day=20240503", "day=20240504"]);
}

/// A string column holding `20240503` and no declared format: refused, naming a
/// value and the setting, instead of every day reported empty (and `--allow-empty`
/// then writing an empty partition).
#[tokio::test]
async fn a_string_period_column_of_another_form_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, true),
            Field::new("dt", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(StringArray::from(vec!["20240503", "20240503"])),
        ],
    )
    .unwrap();
    append_batch(&dir.path().join("events"), batch, &["dt"]).await;
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        "name = \"events_daily\"\n\
         [source]\ntable = \"events\"\npartition_column = \"dt\"\n\
         [target]\ntable = \"events_daily\"\n[state]\ntable = \"state\"\n\
         [transform]\nsql = \"SELECT kind, dt FROM source\"\n",
    )
    .unwrap();
    for extra in [&[][..], &["--allow-empty"]] {
        let mut args = vec![
            "run",
            "--config",
            config.to_str().unwrap(),
            "--date",
            "2024-05-03",
        ];
        args.extend_from_slice(extra);
        let out = latefill_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        for word in ["\"20240503\"", "partition_format", "%Y%m%d"] {
            assert!(err.contains(word), "{word} not in {err}");
        }
        assert!(!dir.path().join("events_daily").exists());
        assert!(!dir.path().join("state").exists());
    }
}
