//! Test support for latefill's crates: a temporary workspace with the default
//! devices pipeline, the data generator's rows, and readers of Delta tables. Real
//! tables in temporary directories; nothing mocked. Not published.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::prelude::SessionContext;
use latefill_datagen::GenerateOptions;
use latefill_executor::Pipeline;
use tempfile::TempDir;
use url::Url;

/// The default pipeline's SQL.
pub const DEFAULT_SQL: &str = "SELECT type, version, count(*) AS devices, event_time FROM source GROUP BY type, version, event_time";

/// A temporary directory holding a source table, a target table and a pipeline file.
#[derive(Debug)]
pub struct Workspace {
    /// The directory; removed when the workspace is dropped.
    pub dir: TempDir,
    /// The pipeline file.
    pub config: PathBuf,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// A workspace whose pipeline runs the default SQL.
    pub fn new() -> Self {
        Self::with_sql(DEFAULT_SQL)
    }

    /// A workspace whose pipeline runs `sql`.
    pub fn with_sql(sql: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pipeline.toml");
        let text = format!(
            "name = \"devices_daily\"\n\
             [source]\ntable = \"devices\"\npartition_column = \"event_time\"\n\
             [target]\ntable = \"devices_daily\"\n\
             [state]\ntable = \"state\"\n\
             [transform]\nsql = '''{sql}'''\n"
        );
        std::fs::write(&config, text).unwrap();
        Workspace { dir, config }
    }

    /// The workspace's pipeline.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::from_file(&self.config).unwrap()
    }

    /// The source table's directory.
    pub fn source_path(&self) -> PathBuf {
        self.dir.path().join("devices")
    }

    /// The target table's directory.
    pub fn target_path(&self) -> PathBuf {
        self.dir.path().join("devices_daily")
    }

    /// Appends `rows` generated rows for `date` to the source; returns its new version.
    pub async fn generate(&self, date: &str, rows: usize, seed: u64) -> u64 {
        GenerateOptions::new(self.source_path().to_str().unwrap(), date)
            .unwrap()
            .with_rows(rows)
            .with_seed(seed)
            .write()
            .await
            .unwrap()
            .table_version
    }

    /// Gives the first `n` days of `month` (`"2024-03"`) `rows` generated rows each,
    /// the i-th day's from seed i; returns the days, in order.
    pub async fn generate_days(&self, month: &str, n: u32, rows: usize) -> Vec<String> {
        let days: Vec<String> = (1..=n).map(|d| format!("{month}-{d:02}")).collect();
        for (i, d) in days.iter().enumerate() {
            self.generate(d, rows, i as u64).await;
        }
        days
    }
}

/// The `file://` URL of a directory.
pub fn url_of(path: &Path) -> Url {
    Url::from_directory_path(path).unwrap()
}

/// The latest version of the table at `path`, or `None` when there is no table.
pub async fn table_version(path: &Path) -> Option<u64> {
    if !path.join("_delta_log").exists() {
        return None;
    }
    deltalake::open_table(url_of(path)).await.ok()?.version()
}

/// Versions of the commit files in the `_delta_log` of the table at `table`, in order.
pub fn commit_versions(table: &Path) -> Vec<u64> {
    let mut versions: Vec<u64> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// The Delta table at `path`, at its latest version.
pub async fn open(path: &Path) -> DeltaTable {
    deltalake::open_table(url_of(path)).await.unwrap()
}

/// Deletes the rows of the Delta table at `path` that `predicate` (SQL) holds for,
/// as a DELETE does (files rewritten, or deletion vectors where the table uses them).
pub async fn delete_where(path: &Path, predicate: &str) {
    open(path)
        .await
        .delete()
        .with_predicate(predicate)
        .await
        .unwrap();
}

/// The rows of `SELECT * FROM t <where>` as a sorted text table.
pub async fn query(path: &Path, sql_after_from: &str) -> Vec<RecordBatch> {
    sql_on(&url_of(path), &format!("SELECT * FROM t {sql_after_from}")).await
}

/// Runs `sql` over the table at `url` (any store), registered as `t`.
pub async fn sql_on(url: &Url, sql: &str) -> Vec<RecordBatch> {
    let table = deltalake::open_table(url.clone()).await.unwrap();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// A partition of the target as a text table, sorted, for whole-table comparison.
pub async fn target_partition_text(path: &Path, date: &str) -> String {
    let batches = query(
        path,
        &format!("WHERE event_time = '{date}' ORDER BY type, version, devices"),
    )
    .await;
    pretty_format_batches(&batches).unwrap().to_string()
}

/// Device counts `(type, version) -> n` of a target partition.
pub async fn target_counts(path: &Path, date: &str) -> BTreeMap<(String, String), i64> {
    let batches = query(path, &format!("WHERE event_time = '{date}'")).await;
    let mut out = BTreeMap::new();
    for b in &batches {
        let kind = b.column_by_name("type").unwrap();
        let kind =
            deltalake::arrow::compute::cast(kind, &deltalake::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let version = b.column_by_name("version").unwrap();
        let version =
            deltalake::arrow::compute::cast(version, &deltalake::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let devices = b
            .column_by_name("devices")
            .unwrap()
            .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            let key = (
                kind.as_string::<i32>().value(i).to_owned(),
                version.as_string::<i32>().value(i).to_owned(),
            );
            assert!(!devices.is_null(i));
            assert!(
                out.insert(key, devices.value(i)).is_none(),
                "duplicate group in target"
            );
        }
    }
    out
}

/// The counts the default SQL must produce for rows generated as `(rows, seed)`
/// batches of `date`, computed in plain Rust from the generator's own batches.
pub fn expected_counts(date: &str, batches: &[(usize, u64)]) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for &(rows, seed) in batches {
        let batch = GenerateOptions::new("/unused", date)
            .unwrap()
            .with_rows(rows)
            .with_seed(seed)
            .generate_batch()
            .unwrap();
        let kinds = batch.column(0).as_string::<i32>();
        let versions = batch.column(2).as_string::<i32>();
        for i in 0..batch.num_rows() {
            *out.entry((kinds.value(i).to_owned(), versions.value(i).to_owned()))
                .or_insert(0) += 1;
        }
    }
    out
}

/// Active data files of the table at `path`, per partition value of `event_time`.
pub async fn files_by_partition(path: &Path) -> BTreeMap<String, Vec<String>> {
    let table = open(path).await;
    let files = latefill_core::storage::active_files(&table).await.unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let value = f
            .partition_values_map()
            .get("event_time")
            .cloned()
            .flatten()
            .unwrap();
        out.entry(value).or_default().push(f.path().into_owned());
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// `(type, version) -> devices` for `date`, recomputed from the whole source with
/// the default SQL: what a target partition of the default pipeline must hold.
pub async fn recomputed_counts(source: &Path, date: &str) -> BTreeMap<(String, String), i64> {
    let batches = query(source, &format!("WHERE event_time = '{date}'")).await;
    let mut out = BTreeMap::new();
    for b in &batches {
        let text = |name: &str| {
            deltalake::arrow::compute::cast(
                b.column_by_name(name).unwrap(),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .unwrap()
        };
        let (kinds, versions) = (text("type"), text("version"));
        for i in 0..b.num_rows() {
            let key = (
                kinds.as_string::<i32>().value(i).to_owned(),
                versions.as_string::<i32>().value(i).to_owned(),
            );
            *out.entry(key).or_insert(0) += 1;
        }
    }
    out
}

/// Checkpoints the Delta table at `path` at its latest version and removes every
/// commit file before it, as log cleanup does: older versions can no longer be loaded.
pub async fn checkpoint_and_clean_up_log(path: &Path) {
    let table = open(path).await;
    let version = table.version().unwrap();
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .unwrap();
    let log = path.join("_delta_log");
    for v in 0..version {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
}

/// The rows of `batches` printed as a table, a line each, sorted: two results
/// compared whole, whatever their order.
pub fn sorted_lines(batches: &[RecordBatch]) -> Vec<String> {
    let text = pretty_format_batches(batches).unwrap().to_string();
    let mut rows: Vec<String> = text
        .lines()
        .skip(3)
        .filter(|l| l.starts_with('|'))
        .map(str::to_owned)
        .collect();
    rows.sort();
    rows
}

/// Appends `batch` to the Delta table at `path` (created, partitioned by
/// `partition_columns`, if missing) in one commit; returns its version.
pub async fn append_batch(path: &Path, batch: RecordBatch, partition_columns: &[&str]) -> u64 {
    std::fs::create_dir_all(path).unwrap();
    DeltaTable::try_from_url(url_of(path))
        .await
        .unwrap()
        .write(vec![batch])
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .with_partition_columns(partition_columns.iter().copied())
        .await
        .unwrap()
        .version()
        .unwrap()
}

/// One row of the default pipeline's target: `devices` 1 of `kind` and `version` on
/// `date`, as another writer of the target would add it.
pub fn target_row(kind: &str, version: &str, date: &str) -> deltalake::arrow::array::RecordBatch {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("type", DataType::Utf8, true),
            Field::new("version", DataType::Utf8, true),
            Field::new("devices", DataType::Int64, false),
            Field::new("event_time", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec![kind])),
            Arc::new(StringArray::from(vec![version])),
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec![date])),
        ],
    )
    .unwrap()
}

/// SplitMix64: a small seedable generator, the same draws on every machine; enough
/// for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `true` `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`, none more likely than another.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
