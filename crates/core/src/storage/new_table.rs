//! Creating a table only where nothing else lives: the new-table guard, the marker of
//! a creation under way, and the put-if-absent probe.

use url::Url;

/// Why latefill will not create a table at a location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewTableError {
    /// A conditional create of an existing object succeeded.
    #[error(
        "the store of {table} ignores put-if-absent: a second conditional create of one \
         object succeeded and overwrote the first. Delta commits there could overwrite each \
         other, so latefill will not create a table on it; use a store that honours \
         `If-None-Match: *` or its equivalent (AWS S3, Azure Blob, ADLS Gen2, GCS, MinIO, R2)"
    )]
    Ignored {
        /// The table that was to be created.
        table: Url,
    },
    /// The location holds files and no Delta table: someone else's data (a folder
    /// of plain Parquet files, another tool's output). A table created there would
    /// leave them untracked, and a VACUUM of it would delete them.
    #[error(
        "{role} {table} is not a Delta table (it has no _delta_log) but already holds {}; \
         latefill creates a {role} table only in an empty or new location, so that no \
         file it did not write becomes part of a Delta table (a VACUUM would delete them). \
         Point the {role} table at a new location{}",
        found.join(", "),
        if *role == "target" { ", or convert the folder to Delta first (CONVERT TO DELTA)" } else { "" }
    )]
    Foreign {
        /// `target` or `state`.
        role: &'static str,
        /// The table that was to be created.
        table: Url,
        /// Up to a few of the entries found there.
        found: Vec<String>,
    },
    /// The store refused the first plain write to the location with an answer no
    /// retry changes (400, 405, 501): it does not take the requests latefill's store
    /// client makes, such as an emulator of another API of the cloud's.
    #[error(
        "the store of {table} refused a plain upload ({answer}): it does not take the \
         requests latefill writes with{}, so latefill will not create a table there. Use \
         the cloud's own store, or an emulator that implements that API",
        if table.scheme() == "gs" {
            " (GCS's XML API: `PUT /<bucket>/<object>`, with `x-goog-if-generation-match: 0` \
             for commits; fake-gcs-server and gcp-storage-emulator, which take uploads \
             through the JSON API only, refuse it)"
        } else {
            ""
        }
    )]
    Refused {
        /// The table that was to be created.
        table: Url,
        /// The store's answer: its status and message.
        answer: String,
    },
    /// The check itself failed.
    #[error("checking that the store of {table} honours put-if-absent: {source}")]
    Store {
        /// The table that was to be created.
        table: Url,
        /// What the store said.
        #[source]
        source: deltalake::ObjectStoreError,
    },
}

impl NewTableError {
    /// Whether the user must change something (a store or a location) rather than
    /// retry.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            NewTableError::Ignored { .. }
                | NewTableError::Foreign { .. }
                | NewTableError::Refused { .. }
        )
    }
}

/// The object latefill puts at the root of a table it is creating, before any data
/// file, and removes after the table's first commit: a location holding it (and the
/// data files of a creation that was cut short) is latefill's own to create. Its name
/// starts with `_`, which Delta readers and VACUUM pass over.
pub const NEW_TABLE_MARKER: &str = "_latefill_new_table";

/// Whether a top-level entry of a table location is latefill's own or Delta's: the
/// marker, the put-if-absent probe, the log.
fn ours(name: &str) -> bool {
    name.starts_with("_latefill") || name == "_delta_log"
}

/// Checks that latefill may create the `role` table at `url` (`table`, an unloaded
/// handle), without writing: refuses a location that holds files and no Delta log
/// unless latefill's marker is there ([`NewTableError::Foreign`]). One listing.
pub async fn check_new_location(
    table: &deltalake::DeltaTable,
    url: &Url,
    role: &'static str,
) -> Result<(), NewTableError> {
    let store = table.log_store().object_store(None);
    let listing = match store.list_with_delimiter(None).await {
        Ok(listing) => listing,
        Err(deltalake::ObjectStoreError::NotFound { .. }) => return Ok(()),
        Err(source) => {
            return Err(NewTableError::Store {
                table: url.clone(),
                source,
            });
        }
    };
    let names: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| format!("{}/", p.filename().unwrap_or(p.as_ref())))
        .chain(listing.objects.iter().map(|o| {
            o.location
                .filename()
                .unwrap_or(o.location.as_ref())
                .to_owned()
        }))
        .collect();
    if names.iter().any(|n| ours(n.trim_end_matches('/'))) {
        return Ok(());
    }
    const SHOWN: usize = 3;
    let mut found: Vec<String> = names.iter().take(SHOWN).cloned().collect();
    if names.len() > SHOWN {
        found.push(format!("{} more", names.len() - SHOWN));
    }
    match found.is_empty() {
        true => Ok(()),
        false => Err(NewTableError::Foreign {
            role,
            table: url.clone(),
            found,
        }),
    }
}

/// Makes ready to create the `role` table at `url` (`table`, an unloaded handle):
/// [`check_new_location`], then puts latefill's marker ([`NEW_TABLE_MARKER`]) and
/// checks that the store honours put-if-absent ([`check_put_if_absent`]). One listing
/// and four writes, once in a table's life.
pub async fn prepare_new_table(
    table: &deltalake::DeltaTable,
    url: &Url,
    role: &'static str,
) -> Result<(), NewTableError> {
    use object_store::ObjectStoreExt;
    check_new_location(table, url, role).await?;
    // The marker and the probe side by side: neither needs the other.
    let store = table.log_store().object_store(None);
    let marker = async {
        store
            .put(&deltalake::Path::from(NEW_TABLE_MARKER), "".into())
            .await
            .map_err(|source| match refusal(&source) {
                Some(answer) => NewTableError::Refused {
                    table: url.clone(),
                    answer,
                },
                None => NewTableError::Store {
                    table: url.clone(),
                    source,
                },
            })
    };
    let (marked, probed) = tokio::join!(marker, check_put_if_absent(table, url));
    marked?;
    probed
}

/// The status and message of a store's answer that refuses a request as such (400,
/// 405, 501), as object_store words it; `None` for any other failure (credentials,
/// the network, a busy store), which another try or a fix elsewhere may mend.
fn refusal(error: &deltalake::ObjectStoreError) -> Option<String> {
    let text = error.to_string();
    let at = text.find("status code: ")? + "status code: ".len();
    let status = &text[at..];
    if !["400", "405", "501"]
        .iter()
        .any(|code| status.starts_with(code))
    {
        return None;
    }
    let line = status.split(':').next().unwrap_or(status).trim();
    let message = status
        .find("\"message\":\"")
        .map(|m| &status[m + "\"message\":\"".len()..])
        .and_then(|rest| rest.split('"').next());
    Some(match message {
        Some(message) => format!("{line}: {message}"),
        None => line.to_owned(),
    })
}

/// Removes the marker [`prepare_new_table`] put, once the table's first commit has
/// landed. Best effort: a marker left behind is passed over by every reader.
pub fn finish_new_table(table: &deltalake::DeltaTable, url: &Url) {
    remove_in_background(
        table.log_store().object_store(None),
        deltalake::Path::from(NEW_TABLE_MARKER),
        url,
    );
}

/// Removes `object` of the table at `url`, latefill's own marker or probe, in a task
/// of its own ([`crate::background::settle`] awaits it): nothing waits for it, which on
/// an object store is a round trip. One left behind, by a process that ended first or
/// a delete that failed, is passed over by every reader, as a crash's would be.
fn remove_in_background(
    store: std::sync::Arc<dyn deltalake::ObjectStore>,
    object: deltalake::Path,
    url: &Url,
) {
    use object_store::ObjectStoreExt;
    let url = url.clone();
    crate::background::spawn(async move {
        match store.delete(&object).await {
            Ok(()) | Err(deltalake::ObjectStoreError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(table = %url, %object, error = %e, "not removed"),
        }
    });
}

/// What is wrong with a local table location before any store is asked: a regular
/// file where the table's directory should be, or a file where one of its parent
/// directories should be. `None` for a location that is not local, or fine.
pub fn local_location_problem(url: &Url) -> Option<String> {
    // `a-file/` (a directory URL's path) would not stat as the file it names.
    let path: std::path::PathBuf = url.to_file_path().ok()?.components().collect();
    let mut at = Some(path.as_path());
    while let Some(p) = at {
        match std::fs::metadata(p) {
            Ok(meta) if meta.is_dir() => return None,
            Ok(_) if p == path => {
                return Some(format!(
                    "{} is a regular file, not a directory holding a Delta table",
                    p.display()
                ));
            }
            Ok(_) => {
                return Some(format!(
                    "{} is a regular file, so no table can be under it",
                    p.display()
                ));
            }
            Err(_) => at = p.parent(),
        }
    }
    None
}

/// Checks, before a table is created at `url`, that its store honours put-if-absent,
/// on which every commit relies: creates one probe object twice, conditionally, and
/// expects the second create to be refused, then removes it (not waited for). Three
/// requests, once in a table's life, and once a process for a bucket (or container)
/// at an endpoint: a second table created there by the process is not probed again.
pub async fn check_put_if_absent(
    table: &deltalake::DeltaTable,
    url: &Url,
) -> Result<(), NewTableError> {
    use deltalake::ObjectStoreError;
    use object_store::{PutMode, PutOptions};
    static HONOURED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    let scope = super::store_scope(url, &table.log_store().config().options().raw);
    if HONOURED.lock().expect("not poisoned").contains(&scope) {
        return Ok(());
    }
    let store = table.log_store().object_store(None);
    let probe = deltalake::Path::from(format!(
        "_latefill_put_if_absent_probe_{:016x}",
        rand::random::<u64>()
    ));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let failed = |source| NewTableError::Store {
        table: url.clone(),
        source,
    };
    store
        .put_opts(&probe, "first".into(), create())
        .await
        .map_err(failed)?;
    let second = store.put_opts(&probe, "second".into(), create()).await;
    remove_in_background(store, probe, url);
    match second {
        Err(ObjectStoreError::AlreadyExists { .. }) => {
            HONOURED.lock().expect("not poisoned").insert(scope);
            Ok(())
        }
        Ok(_) => Err(NewTableError::Ignored { table: url.clone() }),
        Err(e) => Err(failed(e)),
    }
}
