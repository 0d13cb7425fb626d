//! Audits through the CLI: each built-in and a custom one, warn against error, a late
//! partition failing its audit in a backfill, and a project whose upstream audit
//! stops the downstream pipeline for that partition.

use crate::common::*;

const DAY: &str = "2024-01-01";

/// A workspace whose pipeline file has the default SQL (or `sql`) and `audits`
/// (TOML `[[audit]]` entries) appended.
fn with_audits(sql: Option<&str>, audits: &str) -> Workspace {
    let ws = match sql {
        Some(sql) => Workspace::with_sql(sql),
        None => Workspace::new(),
    };
    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, format!("{text}\n{audits}")).unwrap();
    ws
}

/// The device types the generator writes.
const TYPES: &str = r#"["iphone", "galaxy", "pixel", "oneplus", "xperia", "htc"]"#;

/// Every built-in audit, passing: the run publishes, and reports each audit.
#[tokio::test]
async fn built_in_audits_that_pass_let_the_partition_through_and_are_reported() {
    let ws = with_audits(
        None,
        &format!(
            "[[audit]]\nnot_null = [\"type\", \"devices\"]\n\
             [[audit]]\nunique = [\"type\", \"version\", \"event_time\"]\n\
             [[audit]]\naccepted_values = {{ column = \"type\", values = {TYPES} }}\n\
             [[audit]]\nrow_count = {{ min = 1, max = 1000 }}\n\
             [[audit]]\nname = \"fewer rows out than in\"\ncompare = \"rows_out <= rows_in\"\n\
             [[audit]]\nname = \"no empty group\"\nsql = \"SELECT * FROM result WHERE devices < 1\"\n"
        ),
    );
    ws.generate(DAY, 2_000, 1).await;
    let run = json(&ws.run_cli(&["--date", DAY, "--format", "json"]));
    let audits = run["audits"].as_array().unwrap();
    let names: Vec<&str> = audits.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "not_null(type, devices)",
            "unique(type, version, event_time)",
            "accepted_values(type)",
            "row_count(1..1000)",
            "fewer rows out than in",
            "no empty group"
        ]
    );
    assert!(audits.iter().all(|a| a["passed"] == true), "{run}");
    assert_eq!(
        target_counts(&ws.target_path(), DAY).await,
        recomputed_counts(&ws.source_path(), DAY).await
    );
}

/// Each audit of severity `error` that finds offending rows fails the partition:
/// exit 3 naming the audit, the target untouched, and the state records the failure
/// with sample rows.
#[tokio::test]
async fn a_failing_audit_fails_the_partition_and_writes_nothing() {
    let nulls = "SELECT CASE WHEN type = 'iphone' THEN NULL ELSE type END AS type, \
                 count(*) AS devices, event_time FROM source GROUP BY 1, event_time";
    for (sql, audit, expected) in [
        (Some(nulls), "not_null = [\"type\"]", "not_null(type)"),
        (None, "unique = [\"event_time\"]", "unique(event_time)"),
        (
            None,
            "accepted_values = { column = \"type\", values = [\"iphone\"] }",
            "accepted_values(type)",
        ),
        (None, "row_count = { max = 2 }", "row_count(..2)"),
        (None, "compare = \"rows_out > rows_in\"", "compare"),
        (
            None,
            "name = \"big groups\"\nsql = \"SELECT type, devices FROM result WHERE devices > 10\"",
            "big groups",
        ),
    ] {
        let ws = with_audits(sql, &format!("[[audit]]\n{audit}\n"));
        ws.generate(DAY, 2_000, 1).await;
        let out = ws.run_cli(&["--date", DAY]);
        assert_eq!(out.status.code(), Some(3), "{audit}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("audit {expected} failed")),
            "{audit}: {err}"
        );
        assert!(err.contains("nothing was written"), "{err}");
        assert!(
            !ws.target_path().join("_delta_log").exists()
                || table_version(&ws.target_path()).await.is_none(),
            "{audit}: the target was written"
        );
        let status = ws.status_json(&ws.config);
        let row = &status[0];
        assert_eq!(row["status"], "failed", "{status}");
        let error = row["last_error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
        if expected != "row_count(..2)" && expected != "compare" {
            // Up to 5 offending rows, as JSON.
            assert!(error.contains("offending rows, e.g.: {"), "{error}");
        }
    }
}

/// Severity `warn`: the partition is published, the run's output says what the audit
/// found (with a sample row), and `status` shows the warning until the next run.
#[tokio::test]
async fn a_warning_publishes_and_is_reported_in_the_output_and_the_state() {
    let ws = with_audits(
        None,
        "[[audit]]\nname = \"only iphones\"\nseverity = \"warn\"\n\
         accepted_values = { column = \"type\", values = [\"iphone\"] }\n",
    );
    ws.generate(DAY, 2_000, 1).await;
    let out = ws.run_cli(&["--date", DAY]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("audit warning only iphones:"), "{text}");
    assert!(text.contains("e.g. {"), "{text}");
    assert_eq!(
        target_counts(&ws.target_path(), DAY).await,
        recomputed_counts(&ws.source_path(), DAY).await
    );
    let status = ws.status_json(&ws.config);
    let last_run = &status[0]["last_run"];
    assert_eq!(
        last_run["audit_warnings"][0]["name"], "only iphones",
        "{status}"
    );
    assert!(last_run["audit_warnings"][0]["failing_rows"].as_u64() > Some(0));
    assert!(
        last_run["rows_read"] == 2_000 && last_run["duration_ms"].is_u64(),
        "{status}"
    );
    let text = stdout(&ws.latefill(&["status", "--config", ws.config.to_str().unwrap()]));
    assert!(text.contains("audit warning: only iphones"), "{text}");
}

/// In a backfill, a late partition whose audit fails is reported failed (exit 3),
/// stays late with its target as it was, and the other partitions go on.
#[tokio::test]
async fn a_late_partition_failing_its_audit_fails_alone() {
    let ws = with_audits(
        None,
        "[[audit]]\nname = \"no nokia\"\nsql = \"SELECT * FROM result WHERE type = 'nokia'\"\n",
    );
    for (i, day) in ["2024-01-01", "2024-01-02", "2024-01-03"]
        .iter()
        .enumerate()
    {
        ws.generate(day, 1_000, i as u64).await;
    }
    let config = ws.config.to_str().unwrap();
    let all = [
        "backfill",
        "--config",
        config,
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ];
    let out = ws.latefill(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = target_counts(&ws.target_path(), "2024-01-02").await;
    // Late rows of a device the audit refuses for 2024-01-02; late rows of
    // 2024-01-03 pass.
    append_batch(
        &ws.source_path(),
        devices_of("2024-01-02", "nokia", 20),
        &["event_time"],
    )
    .await;
    ws.generate("2024-01-03", 100, 9).await;
    let mut args = all.to_vec();
    args.extend(["--format", "json"]);
    let out = ws.latefill(&args);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |event: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["event"] == event)
            .map(|l| l["partition"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(of("failed"), ["event_time=2024-01-02"], "{lines:?}");
    assert_eq!(of("processed"), ["event_time=2024-01-03"], "{lines:?}");
    assert_eq!(target_counts(&ws.target_path(), "2024-01-02").await, before);
    let status = ws.status_json(&ws.config);
    assert_eq!(
        late_partitions(&status),
        ["event_time=2024-01-02"],
        "{status}"
    );
}

/// In a project, a failed audit upstream stops the downstream pipeline for that
/// partition: it is not processed from an upstream partition that was not published.
#[tokio::test]
async fn a_failed_audit_upstream_stops_the_downstream_pipeline() {
    let ws = Workspace::new();
    let project = ws.dir.path().join("project.toml");
    let entry = |name: &str, source: &str, sql: &str, audit: &str| {
        format!(
            "[[pipeline]]\nname = \"{name}\"\n\
             source = {{ table = \"{source}\", partition_column = \"event_time\" }}\n\
             target = {{ table = \"{name}\" }}\n\
             state = {{ table = \"state\" }}\n\
             transform = {{ sql = '''{sql}''' }}\n{audit}\n"
        )
    };
    std::fs::write(
        &project,
        entry(
            "devices_daily",
            "devices",
            latefill_testkit::DEFAULT_SQL,
            "[[pipeline.audit]]\nname = \"no nokia\"\n\
             sql = \"SELECT * FROM result WHERE type = 'nokia'\"\n",
        ) + &entry(
            "type_daily",
            "devices_daily",
            "SELECT type, sum(devices) AS devices, event_time FROM source GROUP BY type, event_time",
            "",
        ),
    )
    .unwrap();
    let config = project.to_str().unwrap();
    ws.generate(DAY, 1_000, 1).await;
    let out = ws.latefill(&["run", "--config", config, "--date", DAY]);
    assert!(out.status.success(), "{}", stderr(&out));
    append_batch(
        &ws.source_path(),
        devices_of("2024-01-02", "nokia", 5),
        &["event_time"],
    )
    .await;
    ws.generate("2024-01-02", 1_000, 2).await;
    let out = ws.latefill(&["run", "--config", config, "--date", "2024-01-02"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("audit no nokia failed"),
        "{}",
        stderr(&out)
    );
    let status = json(&ws.latefill(&["status", "--config", config, "--format", "json"]));
    let rows: Vec<(String, String, String)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pipeline"].as_str().unwrap().to_owned(),
                r["period"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        rows.contains(&("devices_daily".into(), "2024-01-02".into(), "failed".into())),
        "{rows:?}"
    );
    assert!(
        !rows
            .iter()
            .any(|(p, d, s)| p == "type_daily" && d == "2024-01-02" && s != "unprocessed"),
        "the downstream pipeline ran 2024-01-02: {rows:?}"
    );
}

/// An audit whose SQL does not plan (an unknown column) is refused before anything
/// is claimed or written, naming the audit: exit 3, the state table not created.
#[tokio::test]
async fn an_audit_that_does_not_plan_is_refused_before_the_claim() {
    let ws = with_audits(None, "[[audit]]\nnot_null = [\"colour\"]\n");
    ws.generate(DAY, 100, 1).await;
    let out = ws.run_cli(&["--date", DAY]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("audit not_null(colour) does not plan") && err.contains("colour"),
        "{err}"
    );
    assert!(
        !ws.dir.path().join("state").exists(),
        "the state table was created"
    );
    assert!(!ws.target_path().exists(), "the target was created");
}

/// Mistakes in `[[audit]]` entries are refused when the file is read (exit 2),
/// saying which entry and what to write.
#[tokio::test]
async fn audit_mistakes_are_usage_errors_naming_the_entry() {
    for (audit, says) in [
        ("not_null = [\"type\"]\nunique = [\"type\"]", "has 2 checks"),
        ("name = \"x\"", "checks nothing"),
        ("not_null = []", "needs a list of column names"),
        (
            "not_null = [\"type\"]\nseverity = \"fatal\"",
            "severity \"fatal\"",
        ),
        ("row_count = { min = 5, max = 1 }", "min at most max"),
        ("compare = \"rows_out << rows_in\"", "compare"),
        ("nul_null = [\"type\"]", "unknown field"),
    ] {
        let ws = with_audits(None, &format!("[[audit]]\n{audit}\n"));
        ws.generate(DAY, 100, 1).await;
        let out = ws.run_cli(&["--date", DAY]);
        assert_eq!(out.status.code(), Some(2), "{audit}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{audit}: {}", stderr(&out));
    }
}

/// `n` device rows of `kind` on `date`, in the generator's columns.
fn devices_of(date: &str, kind: &str, n: usize) -> deltalake::arrow::array::RecordBatch {
    use deltalake::arrow::array::StringArray;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let column = |v: &str| Arc::new(StringArray::from(vec![v; n])) as _;
    deltalake::arrow::array::RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("type", DataType::Utf8, true),
            Field::new("full_name", DataType::Utf8, true),
            Field::new("version", DataType::Utf8, true),
            Field::new("event_time", DataType::Utf8, true),
        ])),
        vec![
            column(kind),
            column("Nokia 3310"),
            column("1.0"),
            column(date),
        ],
    )
    .unwrap()
}
