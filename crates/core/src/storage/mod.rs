//! Where tables live: local paths and object stores, opened one way.
//!
//! latefill is built with delta-rs's S3 (`s3://`, `s3a://`), Azure (`az://`, `abfs://`,
//! `abfss://`, `azure://`) and GCS (`gs://`) stores. Every table, whatever its store,
//! is opened through [`table_builder`], so a new backend needs no code change here.
//!
//! Credentials and endpoints come from the environment that object_store and delta-rs
//! read (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AZURE_STORAGE_ACCOUNT_NAME`,
//! `GOOGLE_SERVICE_ACCOUNT`, ...), and from [`StorageOptions`] (the pipeline file's
//! `[storage]` section), which win over the environment.
//!
//! Commits are put-if-absent on every store (S3 `If-None-Match: *`, Azure and GCS
//! preconditions): two writers on two machines can never both commit one version, and
//! no lock service is needed.

use std::collections::BTreeMap;
use std::fmt;

use deltalake::{DeltaResult, DeltaTableBuilder};
use url::Url;

mod cache;
mod checkpoint;
mod coalesced;
#[cfg(test)]
mod counting;
mod failure;
pub mod log_cache;
mod new_table;

pub use cache::{KeptTable, RELOAD_CHECK_EVERY, Tables};
pub use checkpoint::{checkpoint_due, cleanup_expired_logs, write_checkpoint};
pub use coalesced::Coalesced;
pub use failure::StoreFailure;
pub use log_cache::{ReadAhead, read_ahead, reads_ahead};
pub use new_table::{
    NEW_TABLE_MARKER, NewTableError, check_new_location, check_put_if_absent, finish_new_table,
    local_location_problem, prepare_new_table,
};

/// Retries are bounded: an unreachable or refusing store fails a command within about
/// a minute instead of hanging (object_store's own default retries for 3 minutes).
/// Any of these can be overridden in [`StorageOptions`].
pub const DEFAULT_OPTIONS: &[(&str, &str)] = &[
    ("max_retries", "5"),
    ("retry_timeout", "60s"),
    ("connect_timeout", "10s"),
];

/// Options for a table's store, as object_store and delta-rs name them
/// (`aws_endpoint`, `aws_region`, `azure_storage_account_key`, `max_retries`, ...).
///
/// Its `Debug` shows keys only: values may be secrets, and options reach logs.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct StorageOptions(BTreeMap<String, String>);

impl StorageOptions {
    /// No options: the environment and [`DEFAULT_OPTIONS`] alone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// These options, with `overrides` taking precedence.
    pub fn merged(&self, overrides: &StorageOptions) -> StorageOptions {
        let mut out = self.clone();
        out.0
            .extend(overrides.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// The option keys, e.g. to say which were given without their values.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The options delta-rs receives: [`DEFAULT_OPTIONS`], then these.
    fn with_defaults(&self) -> std::collections::HashMap<String, String> {
        DEFAULT_OPTIONS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain(self.0.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for StorageOptions {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        StorageOptions(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// The data files of `table` at its loaded version, from its log (in memory, no
/// request): every file the version holds, whatever its partition.
pub async fn active_files(
    table: &deltalake::DeltaTable,
) -> DeltaResult<Vec<deltalake::kernel::LogicalFileView>> {
    use futures::TryStreamExt;
    table
        .get_active_add_actions_by_predicate(None)
        .try_collect()
        .await
}

/// Whether `url` is a local directory without a Delta log: no table there (yet), told
/// by one lookup, without asking delta-rs (which would report it as an error). `false`
/// for an object store, which only a listing can tell.
pub fn is_local_without_log(url: &Url) -> bool {
    url.to_file_path()
        .is_ok_and(|path| !path.join("_delta_log").is_dir())
}

/// What tells one object store from another for `url` opened with the options `raw`:
/// its scheme and bucket (or container), and any endpoint the options name. Tables
/// of one scope are in one store.
pub(crate) fn store_scope(url: &Url, raw: &std::collections::HashMap<String, String>) -> String {
    let mut scope = format!("{}://{}", url.scheme(), url.authority());
    let mut endpoints: Vec<_> = raw
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().contains("endpoint"))
        .collect();
    endpoints.sort();
    for (key, value) in endpoints {
        scope.push_str(&format!(" {key}={value}"));
    }
    scope
}

/// A builder for the table at `url` with `options` (over [`DEFAULT_OPTIONS`] and the
/// environment). Every table latefill opens is opened through this.
pub fn table_builder(url: &Url, options: &StorageOptions) -> DeltaResult<DeltaTableBuilder> {
    log_cache::install();
    Ok(DeltaTableBuilder::from_url(url.clone())?.with_storage_options(options.with_defaults()))
}

/// Opens the table at `url` at its latest version.
pub async fn open_table(url: &Url, options: &StorageOptions) -> DeltaResult<deltalake::DeltaTable> {
    table_builder(url, options)?.load().await
}

/// The table at `url` loaded at its latest version, or an unloaded handle when there
/// is no table yet, for a write that creates it.
pub async fn open_or_new(
    url: &Url,
    options: &StorageOptions,
) -> DeltaResult<deltalake::DeltaTable> {
    let mut table = table_builder(url, options)?.build()?;
    match table.load().await {
        Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => Ok(table),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let options = StorageOptions::new()
            .with("aws_secret_access_key", "s3cr3t-value")
            .with("aws_region", "eu-west-1");
        let debug = format!("{options:?}");
        assert!(debug.contains("aws_secret_access_key"), "{debug}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(!debug.contains("eu-west-1"), "{debug}");
    }

    #[test]
    fn options_override_the_defaults() {
        let options = StorageOptions::new().with("max_retries", "1");
        let all = options.with_defaults();
        assert_eq!(all["max_retries"], "1");
        assert_eq!(all["retry_timeout"], "60s");
    }
}

/// The log pack of a pipeline, beside its state table: the log files a run read, for
/// the next run on a machine that never ran latefill ([`log_cache::pack`]).
#[derive(Debug, Clone)]
pub struct LogPack {
    state: Url,
    options: StorageOptions,
    /// Names the pack on this machine (its log cache on disk notes it).
    name: String,
    path: object_store::path::Path,
}

impl LogPack {
    /// The pack of `pipeline` beside the state table at `state`; `None` for a state
    /// table on local files (a machine of its own).
    pub fn of(state: &Url, options: &StorageOptions, pipeline: &str) -> Option<LogPack> {
        log_cache::install();
        (state.scheme() != "file").then(|| LogPack {
            state: state.clone(),
            options: options.clone(),
            name: format!("{state} {pipeline}"),
            path: log_cache::pack::location(pipeline),
        })
    }

    /// The state table's store; `None` when it cannot be made (opening the table
    /// says why).
    fn store(&self) -> Option<std::sync::Arc<dyn object_store::ObjectStore>> {
        let storage = table_builder(&self.state, &self.options)
            .ok()?
            .build_storage()
            .ok()?;
        Some(storage.object_store(None))
    }

    /// Starts reading the pack, unless this machine has read or written it before.
    pub fn prefetch(&self) {
        log_cache::pack::prefetch(&self.name, self.path.clone(), || self.store());
    }

    /// Writes the log files this process holds as the pack, when the next new
    /// machine would miss them.
    pub async fn write(self) {
        log_cache::pack::write(&self.name, self.path.clone(), || self.store()).await;
    }
}
