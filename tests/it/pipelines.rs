//! Several pipelines on one state table, through the CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{DataType, Int64Type};

use crate::common::*;

const TYPES_SQL: &str =
    "SELECT type, count(*) AS devices, event_time FROM source GROUP BY type, event_time";

/// Writes `b.toml` beside the workspace's pipeline: another name, another target and
/// SQL, the same source and the same state table.
fn second_pipeline(ws: &Workspace) -> PathBuf {
    let path = ws.dir.path().join("b.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"types_daily\"\n\
             [source]\ntable = \"devices\"\npartition_column = \"event_time\"\n\
             [target]\ntable = \"types_daily\"\n\
             [state]\ntable = \"state\"\n\
             [transform]\nsql = '''{TYPES_SQL}'''\n"
        ),
    )
    .unwrap();
    path
}

/// `type -> devices` for `date`, from `table` (a target) or recomputed from the
/// source with `sql_over_source` when given.
async fn type_counts(table: &Path, date: &str, recompute: bool) -> BTreeMap<String, i64> {
    let sql = if recompute {
        format!(
            "SELECT CAST(type AS VARCHAR), count(*) FROM t WHERE event_time = '{date}' GROUP BY 1"
        )
    } else {
        format!("SELECT CAST(type AS VARCHAR), devices FROM t WHERE event_time = '{date}'")
    };
    let table_ = open(table).await;
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    table_.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table_.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut out = BTreeMap::new();
    for b in &batches {
        let kinds = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert!(!n.is_null(i));
            out.insert(kinds.as_string::<i32>().value(i).to_owned(), n.value(i));
        }
    }
    out
}

/// Partitions a backfill's JSON lines report as processed.
fn processed(lines: &[serde_json::Value]) -> Vec<String> {
    let mut names: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] == "processed")
        .map(|l| l["partition"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn assert_both_targets_are_recomputations(ws: &Workspace, dates: &[&str]) {
    for date in dates {
        let recomputed = recomputed_counts(&ws.source_path(), date).await;
        assert_eq!(
            target_counts(&ws.target_path(), date).await,
            recomputed,
            "a: {date}"
        );
        assert_eq!(
            type_counts(&ws.dir.path().join("types_daily"), date, false).await,
            type_counts(&ws.source_path(), date, true).await,
            "b: {date}"
        );
    }
}

/// Regression: rows were keyed by partition alone, so b's backfill found a's rows,
/// printed "0 partition(s) to process" and never created its target.
#[tokio::test]
async fn a_second_pipeline_on_the_same_state_table_processes_its_own_partitions() {
    let ws = Workspace::new();
    let dates = ["2024-01-01", "2024-01-02", "2024-01-03"];
    for (i, d) in dates.iter().enumerate() {
        ws.generate(d, 300, i as u64).await;
    }
    let b = second_pipeline(&ws);
    let a_lines = ws.backfill_lines(&ws.config, dates[0], dates[2], &[]);
    assert_eq!(processed(&a_lines).len(), 3, "{a_lines:?}");
    let b_lines = ws.backfill_lines(&b, dates[0], dates[2], &[]);
    assert_eq!(
        processed(&b_lines),
        dates.map(|d| format!("event_time={d}")),
        "{b_lines:?}"
    );
    assert_both_targets_are_recomputations(&ws, &dates).await;

    // Each pipeline's status is its own, and late data makes both late.
    ws.generate("2024-01-02", 40, 9).await;
    for config in [&ws.config, &b] {
        let rows = ws.status_json(config);
        assert_eq!(
            late_partitions(&rows),
            ["event_time=2024-01-02"],
            "{}: {rows}",
            config.display()
        );
    }
    ws.backfill_lines(&ws.config, dates[0], dates[2], &[]);
    ws.backfill_lines(&b, dates[0], dates[2], &[]);
    assert_both_targets_are_recomputations(&ws, &dates).await;

    // state rebuild restores the named pipeline's rows only.
    std::fs::remove_dir_all(ws.dir.path().join("state")).unwrap();
    let rebuild = ws.latefill(&["state", "rebuild", "--config", b.to_str().unwrap()]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    for (config, expected) in [(&b, "processed"), (&ws.config, "unprocessed")] {
        let rows = ws.status_json(config);
        assert!(
            rows.as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == expected),
            "{}: {rows}",
            config.display()
        );
    }
}

/// The partitions `outputs` (backfill JSON lines) report as processed, with
/// repeats: a partition processed twice appears twice.
fn processed_by_all(outputs: &[std::process::Output]) -> Vec<String> {
    let mut names = Vec::new();
    for o in outputs {
        assert!(o.status.success(), "{}", stderr(o));
        for line in stdout(o).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_ne!(v["event"], "failed", "{line}");
            if v["event"] == "processed" {
                names.push(v["partition"].as_str().unwrap().to_owned());
            }
        }
    }
    names.sort();
    names
}

#[tokio::test]
async fn four_processes_running_two_pipelines_on_one_state_table_do_all_the_work_once() {
    let ws = Workspace::new();
    let dates = ws.generate_days("2024-02", 8, 200).await;
    let b = second_pipeline(&ws);
    // Two processes per pipeline on overlapping ranges, all at once.
    let runs = [
        (&ws.config, 1, 6),
        (&ws.config, 3, 8),
        (&b, 1, 8),
        (&b, 2, 5),
    ];
    let children: Vec<_> = runs
        .iter()
        .map(|(config, from, to)| {
            let config = config.to_str().unwrap();
            let (from, to) = (dates[from - 1].as_str(), dates[to - 1].as_str());
            spawn_latefill(
                ws.dir.path(),
                &[
                    "backfill",
                    "--config",
                    config,
                    "--from",
                    from,
                    "--to",
                    to,
                    "--concurrency",
                    "2",
                    "--output",
                    "json",
                ],
            )
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let every_date: Vec<String> = dates.iter().map(|d| format!("event_time={d}")).collect();
    assert_eq!(
        processed_by_all(&outputs[..2]),
        every_date,
        "a: each date once"
    );
    assert_eq!(
        processed_by_all(&outputs[2..]),
        every_date,
        "b: each date once"
    );
    let dates: Vec<&str> = dates.iter().map(String::as_str).collect();
    assert_both_targets_are_recomputations(&ws, &dates).await;
}

/// A state table written before rows recorded their pipeline is refused, never
/// misread, and `state rebuild` into a new one recovers.
#[tokio::test]
async fn a_state_table_without_pipelines_is_refused_with_the_way_out() {
    let ws = Workspace::new();
    ws.generate("2024-03-01", 100, 1).await;
    let first = ws.run_cli(&["--date", "2024-03-01"]);
    assert!(first.status.success(), "{}", stderr(&first));
    // Today's rows, less the pipeline column: what an older latefill wrote.
    let state = ws.dir.path().join("state");
    let old_rows = query(&state, "").await;
    let old_rows: Vec<_> = old_rows
        .iter()
        .map(|b| {
            let keep: Vec<usize> = (0..b.num_columns())
                .filter(|&i| b.schema().field(i).name() != "pipeline")
                .collect();
            b.project(&keep).unwrap()
        })
        .collect();
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    deltalake::DeltaTable::try_from_url(url_of(&state))
        .await
        .unwrap()
        .write(old_rows)
        .await
        .unwrap();

    let out = ws.run_cli(&["--date", "2024-03-01"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("written by an older latefill") && err.contains("latefill state rebuild"),
        "{err}"
    );
    // The way out the message gives.
    std::fs::rename(&state, ws.dir.path().join("state.old")).unwrap();
    let rebuild = ws.latefill(&["state", "rebuild", "--config", ws.config.to_str().unwrap()]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    let rows = ws.status_json(&ws.config);
    assert_eq!(rows[0]["partition"], "event_time=2024-03-01");
    assert_eq!(rows[0]["status"], "processed", "{rows}");
}

/// The `stale` flag of each partition in `latefill status --format json`.
fn stale_flags(ws: &Workspace) -> BTreeMap<String, bool> {
    let rows = ws.status_json(&ws.config);
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_str().unwrap().to_owned(),
                r["stale"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn set_sql(ws: &Workspace, sql: &str) {
    let text = std::fs::read_to_string(&ws.config).unwrap();
    let (head, _) = text.split_once("[transform]").unwrap();
    std::fs::write(
        &ws.config,
        format!("{head}[transform]\nsql = '''{sql}'''\n"),
    )
    .unwrap();
}

#[tokio::test]
async fn editing_the_sql_makes_partitions_stale_and_backfill_stale_brings_them_current() {
    let ws = Workspace::new();
    let dates = ["2024-05-01", "2024-05-02", "2024-05-03"];
    for (i, d) in dates.iter().enumerate() {
        ws.generate(d, 400, i as u64).await;
    }
    ws.backfill_lines(&ws.config, dates[0], dates[2], &[]);
    assert!(stale_flags(&ws).values().all(|s| !s));

    // The same SQL laid out otherwise is the same transform.
    set_sql(
        &ws,
        "select type,\n  version,\n  count(*) as devices,\n  event_time\nfrom source\n-- per device\ngroup by type, version, event_time",
    );
    assert!(stale_flags(&ws).values().all(|s| !s), "layout is no change");

    // Another SQL: every processed partition is stale, none is late.
    set_sql(
        &ws,
        "SELECT type, version, count(*) AS devices, event_time FROM source \
         WHERE type <> 'galaxy' GROUP BY type, version, event_time",
    );
    assert!(
        stale_flags(&ws).values().all(|s| *s),
        "{:?}",
        stale_flags(&ws)
    );
    let detect = ws.detect_json(&ws.config, "2024-05-04");
    assert_eq!(detect["late"], serde_json::json!([]), "{detect}");
    assert_eq!(
        detect["stale"],
        serde_json::json!(dates.map(|d| format!("event_time={d}"))),
        "{detect}"
    );

    // Only on request: a plain backfill leaves them; --stale reprocesses them.
    let plain = ws.backfill_lines(&ws.config, dates[0], dates[2], &[]);
    assert!(processed(&plain).is_empty(), "{plain:?}");
    let out = ws.latefill(&[
        "backfill",
        "--config",
        ws.config.to_str().unwrap(),
        "--from",
        dates[0],
        "--to",
        dates[2],
        "--stale",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(processed(&lines).len(), 3, "{lines:?}");
    assert!(stale_flags(&ws).values().all(|s| !s));
    for date in dates {
        let mut expected = recomputed_counts(&ws.source_path(), date).await;
        expected.retain(|(kind, _), _| kind != "galaxy");
        assert_eq!(
            target_counts(&ws.target_path(), date).await,
            expected,
            "{date}"
        );
    }

    // The target's commits record the transform: a rebuilt state knows it.
    std::fs::remove_dir_all(ws.dir.path().join("state")).unwrap();
    let rebuild = ws.latefill(&["state", "rebuild", "--config", ws.config.to_str().unwrap()]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    let flags = stale_flags(&ws);
    assert_eq!(flags.len(), 3);
    assert!(flags.values().all(|s| !s), "{flags:?}");
}

/// `latefill <command> --config <config> --date <date> --output json`: its JSON lines
/// (one per pipeline), asserting success.
fn lines_for_date(
    ws: &Workspace,
    command: &str,
    config: &str,
    date: &str,
) -> Vec<serde_json::Value> {
    let out = ws.latefill(&[
        command, "--config", config, "--date", date, "--output", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out)
}

const TYPES_FROM_DAILY_SQL: &str =
    "SELECT type, sum(devices) AS devices, event_time FROM source GROUP BY type, event_time";

/// A `[[pipeline]]` entry named `name` writing the table `name` from `source`, on the
/// workspace's state table.
fn project_entry(name: &str, source: &str, sql: &str) -> String {
    format!(
        "[[pipeline]]\nname = \"{name}\"\n\
         source = {{ table = \"{source}\", partition_column = \"event_time\" }}\n\
         target = {{ table = \"{name}\" }}\n\
         state = {{ table = \"state\" }}\n\
         transform = {{ sql = '''{sql}''' }}\n\n"
    )
}

/// A project file of two pipelines that feed each other, declared downstream first:
/// devices -> devices_daily -> type_daily, on one state table.
fn chain_project(ws: &Workspace) -> PathBuf {
    let path = ws.dir.path().join("project.toml");
    let text = project_entry("type_daily", "devices_daily", TYPES_FROM_DAILY_SQL)
        + &project_entry("devices_daily", "devices", DEFAULT_SQL);
    std::fs::write(&path, text).unwrap();
    path
}

/// Late device rows for day 2 reach the end of the chain in one `run` of day 4: the
/// upstream pipeline reprocesses day 2, which is a late change of the downstream
/// pipeline's source, reprocessed in the same invocation.
#[tokio::test]
async fn late_rows_reach_the_end_of_a_chain_in_one_run() {
    let ws = Workspace::new();
    let project = chain_project(&ws);
    let config = project.to_str().unwrap();
    for d in 1..=3 {
        let date = format!("2024-01-0{d}");
        ws.generate(&date, 1_000, d).await;
        let order: Vec<_> = lines_for_date(&ws, "run", config, &date)
            .iter()
            .map(|l| l["pipeline"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(order, ["devices_daily", "type_daily"], "upstream first");
    }
    ws.generate("2024-01-02", 300, 20).await;
    ws.generate("2024-01-04", 1_000, 4).await;

    for line in lines_for_date(&ws, "run", config, "2024-01-04") {
        let backfilled: Vec<_> = line["backfilled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["partition"].as_str().unwrap())
            .collect();
        assert_eq!(backfilled, ["event_time=2024-01-02"], "{line}");
        // The upstream update replaced its partition's files: downstream, that is
        // no append, and the day is recomputed.
        if line["pipeline"] == "type_daily" {
            let late = &line["backfilled"][0];
            assert_eq!(late["strategy"], "replace", "{line}");
            let reason = late["strategy_reason"].as_str().unwrap();
            assert!(reason.contains("removed"), "{reason}");
        }
    }

    let type_daily = ws.dir.path().join("type_daily");
    for d in 1..=4 {
        let date = format!("2024-01-0{d}");
        assert_eq!(
            target_counts(&ws.target_path(), &date).await,
            recomputed_counts(&ws.source_path(), &date).await,
            "devices_daily {date}"
        );
        assert_eq!(
            type_counts(&type_daily, &date, false).await,
            type_counts(&ws.source_path(), &date, true).await,
            "type_daily {date}"
        );
    }
    let status = json(&ws.latefill(&["status", "--config", config, "--format", "json"]));
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 8, "{status}");
    assert!(
        rows.iter()
            .all(|r| r["status"] == "processed" && r["late"] == false),
        "{status}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r["pipeline"] == "type_daily")
            .count(),
        4,
        "{status}"
    );
}

/// Commands on a project of several pipelines: `--pipeline` picks one, an unknown
/// name is a usage error that lists the names, and a command that works on one
/// pipeline says so.
#[tokio::test]
async fn a_project_pipeline_is_chosen_by_name() {
    let ws = Workspace::new();
    let project = chain_project(&ws);
    let config = project.to_str().unwrap();
    ws.generate("2024-01-01", 100, 1).await;
    let out = ws.latefill(&[
        "run",
        "--config",
        config,
        "--pipeline",
        "devices_daily",
        "--date",
        "2024-01-01",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out).len(), 1, "the named pipeline only");
    assert!(!ws.dir.path().join("type_daily").exists());

    let out = ws.latefill(&["status", "--config", config, "--pipeline", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("type_daily") && stderr(&out).contains("devices_daily"),
        "{}",
        stderr(&out)
    );
    let out = ws.latefill(&["state", "rebuild", "--config", config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--pipeline NAME"), "{}", stderr(&out));
}

/// A flag that applies to one pipeline, given to a whole project, is refused before
/// anything is read or written, naming the flag and the way out.
#[tokio::test]
async fn a_flag_for_one_pipeline_given_to_a_project_is_refused() {
    let ws = Workspace::new();
    let project = chain_project(&ws);
    let config = project.to_str().unwrap();
    ws.generate("2024-01-01", 100, 1).await;
    let plan = ws.dir.path().join("plan.json");
    let plan = plan.to_str().unwrap();
    for (command, flag) in [
        (&["run", "--source-version", "0"][..], "--source-version"),
        (&["run", "--run-id", "r1"][..], "--run-id"),
        (&["run", "--backfill-config", plan][..], "--backfill-config"),
        (
            &["detect", "--backfill-config", plan][..],
            "--backfill-config",
        ),
    ] {
        let args = [command, &["--config", config, "--date", "2024-01-01"]].concat();
        let out = ws.latefill(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{flag} applies to one pipeline"))
                && err.contains("declares 2")
                && err.contains("--pipeline NAME"),
            "{args:?}: {err}"
        );
        assert!(
            !ws.dir.path().join("state").exists(),
            "{args:?}: state written"
        );
        assert!(
            !std::path::Path::new(plan).exists(),
            "{args:?}: a plan written"
        );
    }
}

/// A cycle is refused before anything is read or written, naming it.
#[test]
fn a_project_whose_pipelines_form_a_cycle_is_refused() {
    let ws = Workspace::new();
    let path = ws.dir.path().join("cycle.toml");
    let sql = "SELECT * FROM source";
    std::fs::write(
        &path,
        project_entry("a", "b", sql) + &project_entry("b", "a", sql),
    )
    .unwrap();
    let out = ws.latefill(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--date",
        "2024-01-01",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("a -> b -> a"), "{}", stderr(&out));
    assert!(!ws.dir.path().join("state").exists());
}

/// A directory of pipeline files is a project: each file's relative tables resolve
/// against the directory, and the pipelines run upstream first whatever the files'
/// order.
#[tokio::test]
async fn a_directory_of_pipeline_files_is_a_project() {
    let ws = Workspace::new();
    let dir = ws.dir.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    let file = |name: &str, source: &str, sql: &str| {
        format!(
            "name = \"{name}\"\n\
             [source]\ntable = \"../{source}\"\npartition_column = \"event_time\"\n\
             [target]\ntable = \"../{name}\"\n\
             [state]\ntable = \"../state\"\n\
             [transform]\nsql = '''{sql}'''\n"
        )
    };
    // Sorted by file name, the downstream pipeline comes first.
    std::fs::write(
        dir.join("1-types.toml"),
        file("type_daily", "devices_daily", TYPES_FROM_DAILY_SQL),
    )
    .unwrap();
    std::fs::write(
        dir.join("2-devices.toml"),
        file("devices_daily", "devices", DEFAULT_SQL),
    )
    .unwrap();
    ws.generate("2024-01-01", 500, 1).await;
    let order: Vec<_> = lines_for_date(&ws, "run", dir.to_str().unwrap(), "2024-01-01")
        .iter()
        .map(|l| l["pipeline"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["devices_daily", "type_daily"]);
    assert_eq!(
        type_counts(&ws.dir.path().join("type_daily"), "2024-01-01", false).await,
        type_counts(&ws.source_path(), "2024-01-01", true).await
    );
}

/// `backfill` and `detect` on a project: every pipeline, upstream first; each detects
/// late changes of its own source.
#[tokio::test]
async fn backfill_and_detect_take_a_project_upstream_first() {
    let ws = Workspace::new();
    let project = chain_project(&ws);
    let config = project.to_str().unwrap();
    for d in 1..=3 {
        ws.generate(&format!("2024-01-0{d}"), 500, d).await;
    }
    let lines = ws.backfill_lines(&project, "2024-01-01", "2024-01-03", &[]);
    let processed: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "processed")
        .map(|l| l["pipeline"].as_str().unwrap())
        .collect();
    assert_eq!(
        processed,
        [
            "devices_daily",
            "devices_daily",
            "devices_daily",
            "type_daily",
            "type_daily",
            "type_daily"
        ],
        "{lines:?}"
    );
    for d in 1..=3 {
        let date = format!("2024-01-0{d}");
        assert_eq!(
            type_counts(&ws.dir.path().join("type_daily"), &date, false).await,
            type_counts(&ws.source_path(), &date, true).await,
            "{date}"
        );
    }

    // Late rows for day 2: the upstream pipeline sees them; the downstream one sees a
    // change only once the upstream rewrites its partition.
    ws.generate("2024-01-02", 100, 9).await;
    let late: BTreeMap<String, Vec<String>> = lines_for_date(&ws, "detect", config, "2024-01-04")
        .iter()
        .map(|l| {
            let names = l["late"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["partition"].as_str().unwrap().to_owned())
                .collect();
            (l["pipeline"].as_str().unwrap().to_owned(), names)
        })
        .collect();
    assert_eq!(late["devices_daily"], ["event_time=2024-01-02"]);
    assert!(late["type_daily"].is_empty(), "{late:?}");
    let lines = ws.backfill_lines(&project, "2024-01-01", "2024-01-03", &["--only-late"]);
    let processed: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "processed")
        .map(|l| {
            (
                l["pipeline"].as_str().unwrap(),
                l["partition"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        processed,
        [
            ("devices_daily", "event_time=2024-01-02"),
            ("type_daily", "event_time=2024-01-02")
        ]
    );
}

/// A pipeline that fails stops what reads from it, not the rest: its error decides the
/// exit code, and the pipeline downstream of it says it was not run.
#[tokio::test]
async fn a_failed_pipeline_is_not_followed_by_those_that_read_it() {
    let ws = Workspace::new();
    let project = chain_project(&ws);
    let text = std::fs::read_to_string(&project).unwrap().replace(
        "GROUP BY type, version, event_time",
        "GROUP BY no_such_column",
    );
    std::fs::write(&project, text).unwrap();
    ws.generate("2024-01-01", 100, 1).await;
    let out = ws.latefill(&[
        "run",
        "--config",
        project.to_str().unwrap(),
        "--date",
        "2024-01-01",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pipeline devices_daily") && stderr(&out).contains("no_such_column"),
        "{}",
        stderr(&out)
    );
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["pipeline"] == "type_daily" && l["skipped"].is_string()),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap()["error"]["exit_code"], 3, "{lines:?}");
    assert!(!ws.dir.path().join("type_daily").exists());
}
