//! Tables on object storage, through the real CLI: S3 on moto's server and Azure Blob
//! on Azurite, both started on loopback by `scripts/with-emulators.sh` (the test
//! command runs under it). No storage API is mocked.
//!
//! Each `check_*` function is one behaviour, run on every store it applies to: local
//! files (`file://`), S3 and Azure. (An in-memory store does not apply: delta-rs gives
//! every open of a `memory://` URL a store of its own, so no table outlives its handle.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::common::*;

#[derive(Debug, Clone, Copy)]
enum Store {
    /// Local files, as `file://` URLs: the checks' baseline.
    Local,
    S3,
    Azure,
}

impl Store {
    /// The bucket or container the emulator serves.
    fn root(self) -> String {
        let variable = match self {
            Store::Local => unreachable!("local tables go in the test's own directory"),
            Store::S3 => "LATEFILL_TEST_S3",
            Store::Azure => "LATEFILL_TEST_AZURE",
        };
        std::env::var(variable).unwrap_or_else(|_| {
            panic!(
                "{variable} is not set: run the tests through scripts/test.sh, which starts \
                 the storage emulators (scripts/with-emulators.sh)"
            )
        })
    }
}

/// A pipeline whose source, target and state tables live under a fresh prefix of
/// the store; only its pipeline file is local.
struct Remote {
    dir: tempfile::TempDir,
    base: String,
    config: PathBuf,
}

impl Remote {
    fn new(store: Store) -> Self {
        Self::with_storage(store, "")
    }

    /// With `storage` appended to the pipeline file (a `[storage]` section).
    fn with_storage(store: Store, storage: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = match store {
            // Beside the pipeline file, removed with it.
            Store::Local => url_of(dir.path()).as_str().trim_end_matches('/').to_owned(),
            _ => store.root(),
        };
        let base = format!("{root}/cli-{:016x}", rand::random::<u64>());
        let config = dir.path().join("pipeline.toml");
        let text = format!(
            "name = \"devices_daily\"\n\
             [source]\ntable = \"{base}/devices\"\npartition_column = \"event_time\"\n\
             [target]\ntable = \"{base}/devices_daily\"\n\
             [state]\ntable = \"{base}/state\"\n\
             [transform]\nsql = '''{DEFAULT_SQL}'''\n{storage}"
        );
        std::fs::write(&config, text).unwrap();
        Remote { dir, base, config }
    }

    fn uri(&self, table: &str) -> String {
        format!("{}/{table}", self.base)
    }

    fn url(&self, table: &str) -> Url {
        Url::parse(&self.uri(table)).unwrap()
    }

    fn latefill(&self, args: &[&str]) -> Output {
        latefill_in(self.dir.path(), args)
    }

    /// `latefill <command> --config <pipeline> <extra>`.
    fn with_config(&self, command: &[&str], extra: &[&str]) -> Output {
        let mut args = command.to_vec();
        args.extend(["--config", self.config.to_str().unwrap()]);
        args.extend_from_slice(extra);
        self.latefill(&args)
    }

    /// `n` days from 2024-01-01 of `rows` rows each, generated into the source (a
    /// commit each); their dates.
    fn generate_days(&self, n: u32, rows: usize) -> Vec<String> {
        let days: Vec<String> = (1..=n).map(day).collect();
        for (i, d) in days.iter().enumerate() {
            self.generate(d, rows, i as u64);
        }
        days
    }

    /// `latefill generate` into the source: `rows` rows of `date`.
    fn generate(&self, date: &str, rows: usize, seed: u64) {
        let source = self.uri("devices");
        let (rows, seed) = (rows.to_string(), seed.to_string());
        let out = self.latefill(&[
            "generate", "--table", &source, "--date", date, "--rows", &rows, "--seed", &seed,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

/// `(type, version) -> devices` in the target's partition of `date`.
async fn target_counts_at(target: &Url, date: &str) -> BTreeMap<(String, String), i64> {
    let sql = format!(
        "SELECT CAST(type AS VARCHAR) AS t, CAST(version AS VARCHAR) AS v, devices FROM t \
         WHERE event_time = '{date}'"
    );
    counts_of(target, &sql).await
}

/// The same counts, recomputed from the whole source.
async fn recomputed_counts_at(source: &Url, date: &str) -> BTreeMap<(String, String), i64> {
    let sql = format!(
        "SELECT CAST(type AS VARCHAR) AS t, CAST(version AS VARCHAR) AS v, count(*) AS devices \
         FROM t WHERE event_time = '{date}' GROUP BY 1, 2"
    );
    counts_of(source, &sql).await
}

async fn counts_of(table: &Url, sql: &str) -> BTreeMap<(String, String), i64> {
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::Int64Type;
    let mut out = BTreeMap::new();
    let text = |column: &deltalake::arrow::array::ArrayRef| {
        deltalake::arrow::compute::cast(column, &deltalake::arrow::datatypes::DataType::Utf8)
            .unwrap()
    };
    for batch in sql_on(table, sql).await {
        let (t, v) = (text(batch.column(0)), text(batch.column(1)));
        let (t, v) = (t.as_string::<i32>(), v.as_string::<i32>());
        let n = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let key = (t.value(i).to_owned(), v.value(i).to_owned());
            assert!(out.insert(key, n.value(i)).is_none(), "duplicate group");
        }
    }
    out
}

/// The late-data story on one store, every command through the CLI: generate, run,
/// late rows, detect, run again, status, changes, backfill and state rebuild.
async fn check_late_data_is_found_and_reprocessed(store: Store) {
    let remote = Remote::new(store);
    remote.generate("2024-01-01", 300, 1);
    remote.generate("2024-01-02", 200, 2);
    for (date, rows) in [("2024-01-01", 300), ("2024-01-02", 200)] {
        let run = json(&remote.with_config(&["run"], &["--date", date, "--output", "json"]));
        assert_eq!(run["partition"], format!("event_time={date}"), "{run}");
        assert_eq!(run["rows_read"], rows, "{run}");
    }

    // Late rows for the first day; then the next day's run.
    remote.generate("2024-01-01", 40, 3);
    remote.generate("2024-01-03", 100, 4);
    let detect =
        json(&remote.with_config(&["detect"], &["--date", "2024-01-03", "--output", "json"]));
    assert_eq!(
        partitions(&detect["late"]),
        ["event_time=2024-01-01"],
        "{detect}"
    );
    let run = json(&remote.with_config(&["run"], &["--date", "2024-01-03", "--output", "json"]));
    assert_eq!(
        partitions(&run["backfilled"]),
        ["event_time=2024-01-01"],
        "{run}"
    );
    // Updated from the 40 late rows alone, on every store.
    assert_eq!(run["backfilled"][0]["strategy"], "incremental", "{run}");
    assert_eq!(run["backfilled"][0]["rows_read"], 40, "{run}");
    for date in ["2024-01-01", "2024-01-02", "2024-01-03"] {
        assert_eq!(
            target_counts_at(&remote.url("devices_daily"), date).await,
            recomputed_counts_at(&remote.url("devices"), date).await,
            "{date}"
        );
    }

    let status = json(&remote.with_config(&["status"], &["--format", "json"]));
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{status}");
    assert!(rows.iter().all(|r| r["status"] == "processed"), "{status}");

    let changes = json(&remote.latefill(&[
        "changes",
        "--table",
        &remote.uri("devices"),
        "--format",
        "json",
    ]));
    assert_eq!(changes["table_version"], 3, "{changes}");

    // Nothing left to do: a backfill of the range processes nothing.
    let lines = json_lines(&remote.with_config(
        &["backfill"],
        &[
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "--only-late",
            "--output",
            "json",
        ],
    ));
    assert!(lines.iter().all(|l| l["event"] != "processed"), "{lines:?}");

    // A state table rebuilt elsewhere on the store from the target's log agrees.
    let rebuilt_config = remote.dir.path().join("rebuilt.toml");
    let text = std::fs::read_to_string(&remote.config).unwrap().replace(
        &format!("{}/state", remote.base),
        &remote.uri("rebuilt_state"),
    );
    std::fs::write(&rebuilt_config, text).unwrap();
    let config = rebuilt_config.to_str().unwrap();
    let out = remote.latefill(&["state", "rebuild", "--config", config]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rebuilt = json(&remote.latefill(&["status", "--config", config, "--format", "json"]));
    let versions = |rows: &serde_json::Value| -> Vec<(String, u64)> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let partition = r["partition"].as_str().unwrap().to_owned();
                (partition, r["source_version"].as_u64().unwrap())
            })
            .collect()
    };
    assert_eq!(versions(&rebuilt), versions(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_late_data_is_found_and_reprocessed() {
    check_late_data_is_found_and_reprocessed(Store::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_late_data_is_found_and_reprocessed() {
    check_late_data_is_found_and_reprocessed(Store::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_late_data_is_found_and_reprocessed() {
    check_late_data_is_found_and_reprocessed(Store::Local).await;
}

/// A backfill into a new target on the store checkpoints it at its 10th commit (the
/// Delta kernel writes it through the store, beside the next partitions) and waits for
/// the checkpoint before it exits.
async fn check_a_new_target_is_checkpointed(store: Store) {
    use object_store::ObjectStoreExt;
    use object_store::path::Path;

    let remote = Remote::new(store);
    let days = remote.generate_days(20, 50);
    let out = remote.with_config(
        &["backfill"],
        &["--from", &days[0], "--to", &days[19], "--concurrency", "2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A commit a partition, or one for the two runs that finished together: 10 to 20
    // commits, so one due a checkpoint at version 9 at least.
    let target = deltalake::open_table(remote.url("devices_daily"))
        .await
        .unwrap();
    let version = target.version().unwrap();
    assert!((10..=19).contains(&version), "{version}");
    let due = version - (version + 1) % 10;
    let files = target.log_store().object_store(None);
    let hint = files
        .get(&Path::from("_delta_log/_last_checkpoint"))
        .await
        .unwrap_or_else(|e| panic!("no _last_checkpoint: {e}"))
        .bytes()
        .await
        .unwrap();
    let hint: serde_json::Value = serde_json::from_slice(&hint).unwrap();
    assert_eq!(hint["version"], due, "{hint} at version {version}");
    files
        .head(&Path::from(format!(
            "_delta_log/{due:020}.checkpoint.parquet"
        )))
        .await
        .unwrap();
    for d in &days {
        assert_eq!(
            target_counts_at(&remote.url("devices_daily"), d).await,
            recomputed_counts_at(&remote.url("devices"), d).await,
            "{d}"
        );
    }
    // The creations' marker and put-if-absent probe, removed while the runs went on,
    // are gone once the process has ended.
    for table in ["devices_daily", "state"] {
        assert_eq!(
            creation_leftovers(&remote.url(table)).await,
            [""; 0],
            "{table}"
        );
    }
}

/// The objects at the root of the table at `url` that latefill puts while it creates
/// a table (`_latefill...`).
async fn creation_leftovers(url: &Url) -> Vec<String> {
    use object_store::ObjectStore;
    let files = deltalake::DeltaTableBuilder::from_url(url.clone())
        .unwrap()
        .build_storage()
        .unwrap()
        .object_store(None);
    let root = files.list_with_delimiter(None).await.unwrap();
    root.objects
        .iter()
        .map(|o| o.location.to_string())
        .filter(|name| name.starts_with("_latefill"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_new_target_is_checkpointed() {
    check_a_new_target_is_checkpointed(Store::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_a_new_target_is_checkpointed() {
    check_a_new_target_is_checkpointed(Store::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_a_new_target_is_checkpointed() {
    check_a_new_target_is_checkpointed(Store::Local).await;
}

/// A target on the store deleted and created again by another writer while a process
/// that wrote it runs on (the library in a scheduler) is read afresh by its next run:
/// the process's last commit file there is another, so the table it keeps is dropped,
/// not advanced from the new table's commits.
async fn check_a_target_created_again_under_a_running_process_is_read_afresh(store: Store) {
    use deltalake::protocol::SaveMode;
    use latefill::PartitionDate;
    use latefill::executor::{Pipeline, Session, run_partition};

    let remote = Remote::new(store);
    let days = remote.generate_days(3, 200);
    let pipeline = Pipeline::from_file(&remote.config).unwrap();
    // One session, as one process keeps its tables and commits between runs.
    let session = Session::new();
    let date = |d: &str| PartitionDate::parse(d).unwrap();
    // Versions 0 to 2, this process's.
    for d in &days {
        run_partition(&pipeline, date(d))
            .with_session(session.clone())
            .await
            .unwrap();
    }
    let target = remote.url("devices_daily");
    delete_table(&target).await;
    // Another writer's table there, versions 0 to 2, one row in the first day.
    for (round, day) in ["2024-01-04", &days[0], "2024-01-04"]
        .into_iter()
        .enumerate()
    {
        deltalake::DeltaTable::try_from_url(target.clone())
            .await
            .unwrap()
            .write(vec![target_row("other", &round.to_string(), day)])
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(["event_time"])
            .await
            .unwrap();
    }

    let report = run_partition(&pipeline, date(&days[0]))
        .with_session(session)
        .await
        .unwrap();
    assert_eq!(report.target_version, 3);
    assert_eq!(
        target_counts_at(&target, &days[0]).await,
        recomputed_counts_at(&remote.url("devices"), &days[0]).await,
        "the other writer's row in the partition is replaced"
    );
    assert_eq!(target_counts_at(&target, "2024-01-04").await.len(), 2);
    // The run wrote its files while it looked at the process's last commit: those it
    // wrote into the table it kept are gone, not left in the other writer's folder.
    assert_eq!(
        data_files_no_commit_names(&target).await,
        Vec::<String>::new()
    );
}

/// The data files in the table at `url` that no commit of its log adds.
async fn data_files_no_commit_names(url: &Url) -> Vec<String> {
    use object_store::ObjectStoreExt;
    let (files, objects) = table_objects(url).await;
    let name = |path: &str| path.rsplit('/').next().unwrap_or(path).to_owned();
    let mut added = std::collections::BTreeSet::new();
    for commit in objects
        .iter()
        .filter(|o| o.as_ref().starts_with("_delta_log/") && o.as_ref().ends_with(".json"))
    {
        let bytes = files.get(commit).await.unwrap().bytes().await.unwrap();
        for line in std::str::from_utf8(&bytes).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(path) = action["add"]["path"].as_str() {
                added.insert(name(path));
            }
        }
    }
    objects
        .iter()
        .map(|o| o.as_ref().to_owned())
        .filter(|o| o.ends_with(".parquet") && !o.starts_with("_delta_log/"))
        .filter(|o| !added.contains(&name(o)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_target_created_again_under_a_running_process_is_read_afresh() {
    check_a_target_created_again_under_a_running_process_is_read_afresh(Store::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_a_target_created_again_under_a_running_process_is_read_afresh() {
    check_a_target_created_again_under_a_running_process_is_read_afresh(Store::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_a_target_created_again_under_a_running_process_is_read_afresh() {
    check_a_target_created_again_under_a_running_process_is_read_afresh(Store::Local).await;
}

/// Three days run on a new machine each (a new container each day), then `last` on
/// the fourth day on another: it reads the log files the day before's run read in one
/// read beside the state table (the log pack), not one read per commit since each
/// table's checkpoint, which for the source would grow with every day since its last
/// checkpoint.
async fn check_a_new_machine_reads_the_logs_in_one_read(last: &[&str]) {
    let remote = Remote::new(Store::S3);
    let days = remote.generate_days(4, 100);
    let on_a_new_machine = |args: &[&str]| {
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_latefill"))
            .args(&args[..1])
            .args(["--config", remote.config.to_str().unwrap()])
            .args(&args[1..])
            .env("LATEFILL_CACHE_DIR", cache.path())
            .current_dir(remote.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    for d in &days[..3] {
        on_a_new_machine(&["run", "--date", d]);
    }
    let before = moto_log_lines();
    let last: Vec<&str> = last
        .iter()
        .map(|a| if *a == "DAY" { days[3].as_str() } else { a })
        .collect();
    on_a_new_machine(&last);
    let requests = moto_requests_since(&remote, before);
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains("/devices/event_time")),
        "the source's partition is read: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains("/state/_latefill_log_pack/")),
        "the pack is read: {requests:#?}"
    );
    let commits_read: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/_delta_log/0") && r.ends_with(".json"))
        .collect();
    assert_eq!(
        commits_read,
        Vec::<&String>::new(),
        "no commit is read on its own: every one is in the pack"
    );
    assert_eq!(
        target_counts_at(&remote.url("devices_daily"), &days[3]).await,
        recomputed_counts_at(&remote.url("devices"), &days[3]).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_run_on_a_new_machine_reads_the_logs_in_one_read() {
    check_a_new_machine_reads_the_logs_in_one_read(&["run", "--date", "DAY"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_backfill_on_a_new_machine_reads_the_logs_in_one_read() {
    check_a_new_machine_reads_the_logs_in_one_read(&["backfill", "--from", "DAY", "--to", "DAY"])
        .await;
}

/// How many lines moto's request log has.
fn moto_log_lines() -> usize {
    let log = std::env::var("LATEFILL_TEST_S3_LOG")
        .expect("LATEFILL_TEST_S3_LOG: run through scripts/test.sh");
    std::fs::read_to_string(&log).unwrap().lines().count()
}

/// The requests (`"GET /bucket/path"`) moto logged for `remote`'s tables after the log's
/// first `before` lines, in order.
fn moto_requests_since(remote: &Remote, before: usize) -> Vec<String> {
    let log = std::env::var("LATEFILL_TEST_S3_LOG")
        .expect("LATEFILL_TEST_S3_LOG: run through scripts/test.sh");
    // This test's requests: the base's last part names them.
    let ours = remote.base.rsplit('/').next().unwrap().to_owned();
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .skip(before)
        .filter_map(|line| {
            let request = line.split('"').nth(1)?;
            let (method, rest) = request.split_once(' ')?;
            // Moto colours a line by its status: "\x1b[33mGET".
            let method = method.rsplit('m').next()?;
            let path = rest.split(' ').next()?;
            path.contains(&format!("{ours}/"))
                .then(|| format!("{method} {path}"))
        })
        .collect()
}

/// A backfill on S3 reads the source files of the partitions it claimed ahead of their
/// runs: at `--concurrency 1`, the second day's file is read before the first day's
/// commit, not after it. Each file is read once (the run finds the copy read ahead),
/// and the result is the recomputation's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_backfill_reads_the_source_files_it_claimed_ahead_and_once() {
    let remote = Remote::new(Store::S3);
    let days = remote.generate_days(4, 100);
    let before = moto_log_lines();
    let out = remote.with_config(
        &["backfill"],
        &["--from", &days[0], "--to", &days[3], "--concurrency", "1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = moto_requests_since(&remote, before);

    let source_reads: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/devices/event_time"))
        .collect();
    let distinct: BTreeSet<&String> = source_reads.iter().copied().collect();
    assert_eq!(source_reads.len(), 4, "one file a day: {requests:#?}");
    assert_eq!(distinct.len(), 4, "each read once: {requests:#?}");
    let position = |wanted: &dyn Fn(&String) -> bool| {
        requests
            .iter()
            .position(wanted)
            .unwrap_or_else(|| panic!("not found in {requests:#?}"))
    };
    let second_day_read = position(&|r: &String| {
        r.starts_with("GET ") && r.contains("/devices/event_time") && r.contains(&days[1])
    });
    let first_commit = position(&|r: &String| {
        r.starts_with("PUT ") && r.contains("/devices_daily/_delta_log/0") && r.ends_with(".json")
    });
    assert!(
        second_day_read < first_commit,
        "the second day's file is read ahead, while the first day runs: {requests:#?}"
    );
    for d in &days {
        assert_eq!(
            target_counts_at(&remote.url("devices_daily"), d).await,
            recomputed_counts_at(&remote.url("devices"), d).await
        );
    }
}

/// On Azure (whose emulator keeps no request log), the fourth day's run on a new
/// machine says at `-vv` that it read the pack, with the files it held, and its result
/// is the recomputation's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_a_run_on_a_new_machine_reads_the_logs_in_one_read() {
    let remote = Remote::new(Store::Azure);
    let days = remote.generate_days(4, 100);
    let on_a_new_machine = |date: &str| {
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_latefill"))
            .args(["-vv", "run", "--config", remote.config.to_str().unwrap()])
            .args(["--date", date])
            .env("LATEFILL_CACHE_DIR", cache.path())
            .current_dir(remote.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    for d in &days[..3] {
        on_a_new_machine(d);
    }
    let log = on_a_new_machine(&days[3]);
    let files: usize = log
        .lines()
        .find(|l| l.contains("read the log pack"))
        .and_then(|l| l.split("files=").nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no log pack read: {log}"));
    assert!(files > 0, "{log}");
    assert_eq!(
        target_counts_at(&remote.url("devices_daily"), &days[3]).await,
        recomputed_counts_at(&remote.url("devices"), &days[3]).await
    );
}

/// The store of the table at `url`, rooted there, and every object in it.
async fn table_objects(
    url: &Url,
) -> (
    Arc<dyn object_store::ObjectStore>,
    Vec<object_store::path::Path>,
) {
    use futures::TryStreamExt;
    let files = deltalake::DeltaTableBuilder::from_url(url.clone())
        .unwrap()
        .build_storage()
        .unwrap()
        .object_store(None);
    let objects = files
        .list(None)
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .unwrap();
    (files, objects)
}

/// Deletes every object of the table at `url`.
async fn delete_table(url: &Url) {
    use object_store::ObjectStoreExt;
    let (files, objects) = table_objects(url).await;
    assert!(!objects.is_empty(), "nothing to delete at {url}");
    for object in &objects {
        files.delete(object).await.unwrap();
    }
}

/// `partition -> status` of every partition the state table records.
async fn recorded(engine: &latefill::Engine) -> BTreeMap<String, String> {
    engine
        .status()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.status != "unprocessed")
        .map(|row| (row.partition.to_string(), row.status))
        .collect()
}

/// `engine.run_date` of `date`, with the default options; it must succeed.
async fn run_date(engine: &latefill::Engine, date: &str) {
    let date = latefill::PartitionDate::parse(date).unwrap();
    engine.run_date(date).await.unwrap();
}

fn processed(days: &[&str]) -> BTreeMap<String, String> {
    days.iter()
        .map(|d| (format!("event_time={d}"), "processed".to_owned()))
        .collect()
}

/// A state table on the store deleted under a process that keeps it (the library in
/// a scheduler): the process's next run finds it gone and creates it anew, instead of
/// committing the version after the one it kept into an empty prefix (a log without
/// its first commits, which no reader can load).
async fn check_a_state_table_deleted_under_a_running_process_is_created_anew(store: Store) {
    use latefill::executor::Pipeline;
    let remote = Remote::new(store);
    let days = remote.generate_days(3, 100);
    let engine = latefill::Engine::new(Pipeline::from_file(&remote.config).unwrap());
    run_date(&engine, &days[0]).await;
    run_date(&engine, &days[1]).await;
    assert_eq!(recorded(&engine).await, processed(&[&days[0], &days[1]]));

    delete_table(&remote.url("state")).await;
    run_date(&engine, &days[2]).await;

    // A process that never saw the old table reads the new one: the third day only.
    let fresh = latefill::Engine::new(Pipeline::from_file(&remote.config).unwrap());
    assert_eq!(recorded(&fresh).await, processed(&[&days[2]]));
    assert_eq!(recorded(&engine).await, processed(&[&days[2]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_state_table_deleted_under_a_running_process_is_created_anew() {
    check_a_state_table_deleted_under_a_running_process_is_created_anew(Store::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_a_state_table_deleted_under_a_running_process_is_created_anew() {
    check_a_state_table_deleted_under_a_running_process_is_created_anew(Store::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_a_state_table_deleted_under_a_running_process_is_created_anew() {
    check_a_state_table_deleted_under_a_running_process_is_created_anew(Store::Local).await;
}

/// A state table on the store deleted and created again by another process, with as
/// many commits as the table a running process keeps: that process reads the new
/// table, not the rows it kept of the old one.
async fn check_a_state_table_created_again_under_a_running_process_is_read_afresh(store: Store) {
    use latefill::executor::Pipeline;
    let remote = Remote::new(store);
    let days = remote.generate_days(3, 100);
    let pipeline = Pipeline::from_file(&remote.config).unwrap();
    let engine = latefill::Engine::new(pipeline.clone());
    run_date(&engine, &days[0]).await;
    run_date(&engine, &days[1]).await;
    assert_eq!(recorded(&engine).await, processed(&[&days[0], &days[1]]));
    let kept = engine.state().read().await.unwrap().version;

    // S3 and Azure list times to the second: the new table's commits come later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    delete_table(&remote.url("state")).await;
    let other = latefill::Engine::new(pipeline.clone());
    run_date(&other, &days[1]).await;
    run_date(&other, &days[2]).await;
    assert_eq!(
        other.state().read().await.unwrap().version,
        kept,
        "the new table has as many commits as the one kept"
    );

    assert_eq!(recorded(&engine).await, processed(&[&days[1], &days[2]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_state_table_created_again_under_a_running_process_is_read_afresh() {
    check_a_state_table_created_again_under_a_running_process_is_read_afresh(Store::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_a_state_table_created_again_under_a_running_process_is_read_afresh() {
    check_a_state_table_created_again_under_a_running_process_is_read_afresh(Store::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_a_state_table_created_again_under_a_running_process_is_read_afresh() {
    check_a_state_table_created_again_under_a_running_process_is_read_afresh(Store::Local).await;
}

/// Waits for `child` at most `limit`; kills it and fails if it is still running, so
/// that a command that hangs fails the test instead of hanging it.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> Output {
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("still running after {limit:?}: a hang, not a bounded retry");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `latefill run` with `storage` in the pipeline file: its output, bounded in time.
fn run_with_storage(store: Store, storage: &str) -> (Remote, Output) {
    let remote = Remote::with_storage(store, storage);
    let child = Command::new(env!("CARGO_BIN_EXE_latefill"))
        .args(["run", "--config", remote.config.to_str().unwrap()])
        .args(["--date", "2024-01-01", "-vv"])
        .current_dir(remote.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(180));
    (remote, out)
}

/// The `error` object of a failed `--output json` command's stdout.
fn json_error(out: &Output) -> serde_json::Value {
    assert!(!out.status.success());
    let value: serde_json::Value = serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {}", stdout(out)));
    value["error"].clone()
}

/// Asserts a clear failure: exit 2 or 3, one error paragraph naming `what`, no
/// backtrace, and nothing on stdout.
fn assert_clear_error(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(
        matches!(out.status.code(), Some(2 | 3)),
        "exit {:?}: {err}",
        out.status.code()
    );
    assert!(err.contains("error: "), "{err}");
    assert!(err.contains(what), "{what} not named: {err}");
    assert!(!err.contains("stack backtrace"), "{err}");
    assert!(stdout(out).is_empty(), "{}", stdout(out));
}

#[test]
fn a_bucket_that_does_not_exist_is_a_clear_error() {
    let remote = Remote::new(Store::S3);
    let text = std::fs::read_to_string(&remote.config).unwrap();
    let root = Store::S3.root();
    let missing = "s3://latefill-no-such-bucket";
    std::fs::write(&remote.config, text.replace(&root, missing)).unwrap();
    let out = remote.with_config(&["run"], &["--date", "2024-01-01"]);
    assert_clear_error(&out, "latefill-no-such-bucket");
}

/// Wrong credentials: Azurite checks every request's signature. The key given in the
/// pipeline file must not appear anywhere in the output, even at `-vv`.
#[test]
fn wrong_credentials_are_a_clear_error_that_shows_no_secret() {
    let secret = "bm90LXRoZS1yZWFsLWtleS1sYXRlZmlsbC10ZXN0";
    let storage = format!("[storage]\nazure_storage_account_key = \"{secret}\"\n");
    let (remote, out) = run_with_storage(Store::Azure, &storage);
    assert_clear_error(&out, &remote.base);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("denied access"), "{}", stderr(&out));
    assert!(!all.contains(secret), "the secret leaked: {all}");
    // Nor in the JSON error a scheduler reads.
    let out = remote.with_config(&["run"], &["--date", "2024-01-01", "--output", "json"]);
    let error = json_error(&out);
    assert_eq!(error["kind"], "usage", "{error}");
    assert!(!stdout(&out).contains(secret) && !stderr(&out).contains(secret));
}

/// An endpoint nobody listens on: retries are bounded and the command fails instead
/// of hanging.
#[test]
fn an_unreachable_endpoint_fails_after_bounded_retries() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
        // Dropped: nothing listens there any more.
    };
    let storage = format!("[storage]\naws_endpoint = \"http://127.0.0.1:{port}\"\n");
    let (_remote, out) = run_with_storage(Store::S3, &storage);
    assert_clear_error(&out, &format!("127.0.0.1:{port}"));
}

fn day(d: u32) -> String {
    format!("2024-01-{d:02}")
}

/// `latefill backfill` in its own UTS and PID namespace, as in a container: every
/// worker is host `latefill-worker`, PID 1. `--kill-child` makes a SIGKILL of the
/// `unshare` process kill the worker too.
fn containerised_backfill(remote: &Remote, from: u32, to: u32) -> std::process::Child {
    Command::new("unshare")
        .args(["--uts", "--pid", "--fork", "--kill-child", "sh", "-c"])
        .arg("hostname latefill-worker && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_latefill"))
        .args(["backfill", "--config", remote.config.to_str().unwrap()])
        .args(["--from", &day(from), "--to", &day(to)])
        // Small batches spread the partitions over the workers.
        .args([
            "--lease-seconds",
            "5",
            "--batch-size",
            "2",
            "--output",
            "json",
        ])
        .current_dir(remote.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs (util-linux, as root)")
}

/// The JSON lines a worker printed, read as they come. While `kills` is above zero, a
/// worker that says it started a partition takes one and is killed (SIGKILL),
/// mid-partition, with the rest of its batch claimed and not started.
fn worker_lines(
    mut child: std::process::Child,
    kills: Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<(Vec<serde_json::Value>, String, Option<i32>)> {
    use std::io::{BufRead, Read};
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for line in stdout.lines() {
            let value: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let started = value["event"] == "started";
            lines.push(value);
            if started
                && kills
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
                    .is_ok()
            {
                child.kill().unwrap();
                break;
            }
        }
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        (lines, err, status.code())
    })
}

/// K=6 workers on overlapping ranges against one S3 state table, all with the same
/// hostname and PID 1, late data landing while they run, two SIGKILLed mid-partition.
/// After the leases expire one more backfill leaves every partition processed and the
/// target equal to a recomputation of the whole source; no partition was ever
/// processed by two workers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_containerised_workers_with_one_hostname_and_pid_share_an_s3_state_table() {
    let remote = Remote::new(Store::S3);
    for d in 1..=8 {
        remote.generate(&day(d), 2_000, u64::from(d));
    }
    let ranges = [(1, 8), (1, 4), (5, 8), (1, 8), (3, 6), (2, 8)];
    // The first two workers to start a partition are killed mid-partition.
    let kills = Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let workers: Vec<_> = ranges
        .iter()
        .map(|(from, to)| worker_lines(containerised_backfill(&remote, *from, *to), kills.clone()))
        .collect();
    // Late data lands while they run.
    remote.generate(&day(2), 500, 100);
    remote.generate(&day(7), 500, 101);
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let killed = results.iter().filter(|(_, _, code)| code.is_none()).count();
    assert_eq!(killed, 2, "two workers were killed mid-partition");
    for (i, (lines, err, code)) in results.iter().enumerate() {
        if code.is_none() {
            continue;
        }
        assert!(
            lines.iter().all(|l| l["event"] != "failed"),
            "worker {i}: {lines:?}"
        );
        assert!(
            matches!(code, Some(0 | 4)),
            "worker {i} exit {code:?}: {err}"
        );
    }

    // The killed workers' claims expire (5 s); one more backfill finishes the work.
    std::thread::sleep(Duration::from_secs(6));
    let last = remote.with_config(
        &["backfill"],
        &["--from", &day(1), "--to", &day(8), "--output", "json"],
    );
    let last_lines = json_lines(&last);

    // No partition was processed by two workers at once.
    let mut spans: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in results.iter().flat_map(|r| &r.0).chain(&last_lines) {
        if line["event"] == "processed" {
            spans
                .entry(line["partition"].as_str().unwrap().to_owned())
                .or_default()
                .push((
                    line["started_at"].as_str().unwrap().to_owned(),
                    line["finished_at"].as_str().unwrap().to_owned(),
                ));
        }
    }
    for (partition, list) in &mut spans {
        list.sort();
        for pair in list.windows(2) {
            let parse = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
            assert!(
                parse(&pair[0].1) <= parse(&pair[1].0),
                "{partition} processed twice at once: {pair:?}"
            );
        }
    }

    // Every partition processed, and the target is the whole source recomputed.
    let status = json(&remote.with_config(&["status"], &["--format", "json"]));
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 8, "{status}");
    // The workers were indistinguishable by host and PID: only run ids told them apart.
    assert!(
        rows.iter().any(|r| r["owner"] == "latefill-worker:1"),
        "{status}"
    );
    assert!(
        rows.iter()
            .all(|r| r["status"] == "processed" && r["late"] != true),
        "{status}"
    );
    for d in 1..=8 {
        assert_eq!(
            target_counts_at(&remote.url("devices_daily"), &day(d)).await,
            recomputed_counts_at(&remote.url("devices"), &day(d)).await,
            "{}",
            day(d)
        );
    }
}

/// A store that ignores put-if-absent (moto 4 predates S3's conditional writes) would
/// let two commits of one version overwrite each other. latefill checks before it
/// creates a table there, and refuses: exit 2, one paragraph, no table created.
#[test]
fn a_store_that_ignores_put_if_absent_is_refused_before_any_table_is_created() {
    let endpoint = std::env::var("LATEFILL_TEST_S3_NO_PRECONDITION")
        .expect("LATEFILL_TEST_S3_NO_PRECONDITION: run through scripts/test.sh");
    let remote = Remote::new(Store::S3);
    let on_old_store = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_latefill"))
            .args(args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .current_dir(remote.dir.path())
            .output()
            .unwrap()
    };
    let source = remote.uri("devices");
    let out = on_old_store(&["generate", "--table", &source, "--date", "2024-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = remote.config.to_str().unwrap();
    let out = on_old_store(&["run", "--config", config, "--date", "2024-01-01"]);
    assert_clear_error(&out, "ignores put-if-absent");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&remote.uri("state")),
        "{}",
        stderr(&out)
    );
    for table in ["state", "devices_daily"] {
        let out = on_old_store(&["changes", "--table", &remote.uri(table)]);
        assert!(
            !out.status.success(),
            "{table} was created: {}",
            stdout(&out)
        );
    }
}

/// A GCS endpoint that does not take object_store's uploads (fake-gcs-server takes
/// them through the JSON API only; object_store writes through the XML API) is
/// refused at the first write to a new table: exit 2, the answer and what latefill
/// needs in one paragraph, no table created, the source untouched.
#[test]
fn a_gcs_endpoint_without_the_xml_api_uploads_is_refused_before_any_table_is_created() {
    let bucket = std::env::var("LATEFILL_TEST_GCS_JSON_ONLY")
        .expect("LATEFILL_TEST_GCS_JSON_ONLY: run through scripts/test.sh");
    let account = std::env::var("LATEFILL_TEST_GCS_SERVICE_ACCOUNT").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{bucket}/cli-{:016x}", rand::random::<u64>());
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"devices_daily\"\n\
             [source]\ntable = \"devices\"\npartition_column = \"event_time\"\n\
             [target]\ntable = \"{base}/devices_daily\"\n\
             [state]\ntable = \"{base}/state\"\n\
             [transform]\nsql = '''{DEFAULT_SQL}'''\n"
        ),
    )
    .unwrap();
    let latefill = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_latefill"))
            .args(args)
            .env("GOOGLE_SERVICE_ACCOUNT", &account)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = latefill(&["generate", "--table", "devices", "--date", "2024-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let source_log = || {
        std::fs::read_dir(dir.path().join("devices/_delta_log"))
            .unwrap()
            .count()
    };
    let before = source_log();

    let config = config.to_str().unwrap();
    let out = latefill(&["run", "--config", config, "--date", "2024-01-01"]);
    assert_clear_error(&out, "refused a plain upload (400 Bad Request");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("{base}/state")), "{err}");
    assert!(err.contains("GCS's XML API"), "{err}");
    for table in ["state", "devices_daily"] {
        let out = latefill(&["changes", "--table", &format!("{base}/{table}")]);
        assert!(
            !out.status.success(),
            "{table} was created: {}",
            stdout(&out)
        );
    }
    assert_eq!(source_log(), before, "the source was written to");
}

/// `latefill <args>` for `remote` with the environment changed by `env` (`None`
/// removes a variable). The instance-metadata endpoints point at a closed loopback
/// port, so that a client looking for credentials there asks nothing off this machine.
fn with_env(remote: &Remote, args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latefill"));
    command
        .args(args)
        .current_dir(remote.dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_CONFIG_FILE", "/nonexistent/latefill-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/latefill-test");
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    command.output().unwrap()
}

/// No credentials anywhere: a configuration error (exit 2) saying what to set, not a
/// storage failure to retry; the access key id is never printed.
#[test]
fn missing_credentials_are_a_usage_error_that_says_what_to_set() {
    let remote = Remote::new(Store::S3);
    let config = remote.config.to_str().unwrap();
    let out = with_env(
        &remote,
        &["run", "--config", config, "--date", "2024-01-01"],
        &[("AWS_ACCESS_KEY_ID", None), ("AWS_SECRET_ACCESS_KEY", None)],
    );
    assert_clear_error(&out, "credentials");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
    // With a key id and no secret: the id is not printed either.
    let out = with_env(
        &remote,
        &["-vv", "run", "--config", config, "--date", "2024-01-01"],
        &[
            ("AWS_ACCESS_KEY_ID", Some("AKIALATEFILLTESTKEYID")),
            ("AWS_SECRET_ACCESS_KEY", None),
        ],
    );
    assert!(!out.status.success());
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains("AKIALATEFILLTESTKEYID"),
        "the key id leaked: {all}"
    );
}

/// A plain http:// endpoint without AWS_ALLOW_HTTP: exit 2, naming the setting.
#[test]
fn a_plain_http_endpoint_without_allow_http_is_a_usage_error() {
    let remote = Remote::new(Store::S3);
    let config = remote.config.to_str().unwrap();
    let out = with_env(
        &remote,
        &["run", "--config", config, "--date", "2024-01-01"],
        &[("AWS_ALLOW_HTTP", None)],
    );
    assert_clear_error(&out, "AWS_ALLOW_HTTP");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A prefix holding someone else's objects and no Delta log is not adopted as a
/// target or a state table, on either store.
#[tokio::test]
async fn a_prefix_of_other_objects_is_not_adopted() {
    for store in [Store::S3, Store::Azure] {
        for (table, role) in [("devices_daily", "target"), ("state", "state")] {
            let remote = Remote::new(store);
            let source = remote.uri("devices");
            let out = remote.latefill(&["generate", "--table", &source, "--date", "2024-01-01"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let url = remote.url(table);
            let objects =
                latefill::storage::table_builder(&url, &latefill::storage::StorageOptions::new())
                    .unwrap()
                    .build()
                    .unwrap()
                    .log_store()
                    .object_store(None);
            use object_store::ObjectStoreExt;
            objects
                .put(&"legacy/part-0.parquet".into(), "theirs".into())
                .await
                .unwrap();
            let out = remote.with_config(&["run"], &["--date", "2024-01-01"]);
            assert_clear_error(&out, "is not a Delta table");
            assert_eq!(
                out.status.code(),
                Some(2),
                "{store:?} {role}: {}",
                stderr(&out)
            );
            assert!(stderr(&out).contains("legacy/"), "{}", stderr(&out));
            for other in ["state", "devices_daily"] {
                let out = remote.latefill(&["changes", "--table", &remote.uri(other)]);
                assert!(!out.status.success(), "{store:?}: {other} was created");
            }
        }
    }
}

/// An `https://` address of a store that serves plain HTTP: a usage error naming the
/// TLS handshake and the way out, not "nothing answers" and not a retry.
#[test]
fn an_https_address_of_a_plain_http_store_is_a_tls_error() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("set by with-emulators.sh");
    let https = endpoint.replacen("http://", "https://", 1);
    let storage = format!("[storage]\naws_endpoint = \"{https}\"\n");
    let (_remote, out) = run_with_storage(Store::S3, &storage);
    assert_clear_error(&out, &format!("TLS handshake with {https} failed"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("http:// address"), "{}", stderr(&out));
}

/// Azurite as a real Azure account is reached: by its address and account key, not
/// as "the emulator" (which object_store lets speak plain HTTP on its own).
fn azure_as_an_account(remote: &Remote, args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    const AZURITE_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let azurite = std::env::var("AZURITE_BLOB_STORAGE_URL").expect("set by with-emulators.sh");
    let account = format!("{azurite}/devstoreaccount1");
    let mut all: Vec<(&str, Option<&str>)> = vec![
        ("AZURE_STORAGE_USE_EMULATOR", None),
        ("AZURE_STORAGE_ENDPOINT", Some(&account)),
        ("AZURE_STORAGE_ACCOUNT_KEY", Some(AZURITE_KEY)),
        // Where a client without credentials asks for a token: nothing listens here.
        (
            "AZURE_MSI_ENDPOINT",
            Some("http://127.0.0.1:9/metadata/identity/oauth2/token"),
        ),
    ];
    all.extend_from_slice(env);
    with_env(remote, args, &all)
}

/// On Azure as on S3: no credentials is a usage error saying what to set, and a plain
/// `http://` account address without allow_http is one saying how to allow it, which
/// then works.
#[test]
fn azure_missing_credentials_and_plain_http_are_usage_errors() {
    let remote = Remote::new(Store::Azure);
    let config = remote.config.to_str().unwrap();
    let run = ["run", "--config", config, "--date", "2024-01-01"];
    let out = azure_as_an_account(
        &remote,
        &run,
        &[
            ("AZURE_STORAGE_ACCOUNT_KEY", None),
            ("AZURE_ALLOW_HTTP", Some("true")),
        ],
    );
    assert_clear_error(&out, "no credentials were found");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AZURE_STORAGE_ACCOUNT_KEY"),
        "{}",
        stderr(&out)
    );

    let out = azure_as_an_account(&remote, &run, &[]);
    assert_clear_error(&out, "plain http://");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AZURE_ALLOW_HTTP=true"),
        "{}",
        stderr(&out)
    );

    // Following the hint works: the source is generated and the day processed.
    let generate = [
        "generate",
        "--table",
        &remote.uri("devices"),
        "--date",
        "2024-01-01",
    ];
    let allowed = [("AZURE_ALLOW_HTTP", Some("true"))];
    let out = azure_as_an_account(&remote, &generate, &allowed);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = azure_as_an_account(&remote, &run, &allowed);
    assert!(out.status.success(), "{}", stderr(&out));
}
