//! The plain append: generated rows added to an existing table at the cost of writing
//! them.
//!
//! delta-rs's write operation loads the whole table (every file of every version) to
//! append one file, plans the write through DataFusion, and reads its own commit back:
//! most of a generated day's cost, growing with the table's versions. An append needs
//! none of that. It reads the table's protocol and metadata ([`read_head`]: one
//! listing of the log, then its newest commits until they are found, the newest
//! checkpoint only when they are not), writes the data files, and puts the next
//! version's commit, put-if-absent; a version taken meanwhile is found by that put,
//! and the append goes again from a fresh read. Checkpoints and log cleanup follow
//! delta-rs's rules.
//!
//! It takes only tables it can append to as delta-rs would: the generator's schema,
//! partitioned by `event_time`, with a protocol whose writer features a plain append
//! honours. Any other table ([`Plain::Unsupported`]) goes through delta-rs's write,
//! which creates, checks and refuses as it always did.

use std::sync::Arc;

use delta_kernel::schema::DataType;
use delta_kernel::table_configuration::TableConfiguration;
use delta_kernel::table_features::TableFeature;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::transaction::TransactionError;
use deltalake::kernel::{Action, Snapshot};
use deltalake::logstore::{CommitOrBytes, LogStore};
use deltalake::operations::write::configs::WriterStatsConfig;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaResult, DeltaTableError};

use crate::{PARTITION_COLUMN, device_schema};

/// How many times a commit goes again after another writer took its version.
const COMMIT_ATTEMPTS: usize = 15;

/// What [`append`] did.
#[derive(Debug)]
pub(crate) enum Plain {
    /// The rows were committed at this version.
    Committed(u64),
    /// The table is not one a plain append may write (or there is no table yet):
    /// nothing was written.
    Unsupported,
}

/// Appends `batches` (rows of [`device_schema`]) to the table of `log_store` in one
/// commit, when the table takes a plain append ([`Plain`]).
pub(crate) async fn append(
    log_store: Arc<dyn LogStore>,
    batches: &[RecordBatch],
) -> DeltaResult<Plain> {
    let Some(mut head) = read_head(log_store.as_ref()).await? else {
        return Ok(Plain::Unsupported);
    };
    if !takes_plain_append(&head) {
        return Ok(Plain::Unsupported);
    }

    let stats = WriterStatsConfig::from_config(&head);
    let config = WriterConfig::new(
        device_schema(),
        vec![PARTITION_COLUMN.to_owned()],
        None,
        Some(head.table_properties().target_file_size()),
        None,
        stats.num_indexed_cols,
        stats.stats_columns,
    );
    let mut writer = DeltaWriter::new(log_store.object_store(None), config);
    for batch in batches {
        writer.write(batch).await?;
    }
    let adds = writer.close().await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();

    let mut commit = Vec::new();
    let info = serde_json::json!({"commitInfo": {
        "timestamp": chrono::Utc::now().timestamp_millis(),
        "operation": "WRITE",
        "operationParameters": {"mode": "Append", "partitionBy": format!("[\"{PARTITION_COLUMN}\"]")},
        "operationMetrics": {"num_added_files": adds.len(), "num_added_rows": rows},
        "clientVersion": concat!("latefill.", env!("CARGO_PKG_VERSION")),
        "isBlindAppend": true,
    }});
    serde_json::to_writer(&mut commit, &info).map_err(json_error)?;
    for add in adds {
        commit.push(b'\n');
        serde_json::to_writer(&mut commit, &Action::Add(add)).map_err(json_error)?;
    }
    let commit = bytes::Bytes::from(commit);

    for _ in 0..COMMIT_ATTEMPTS {
        let version = head.version() + 1;
        let entry = CommitOrBytes::LogBytes(commit.clone());
        match log_store
            .write_commit_entry(version, entry, uuid::Uuid::new_v4())
            .await
        {
            Ok(()) => {
                checkpoint(log_store.as_ref(), head.table_properties(), version).await;
                return Ok(Plain::Committed(version));
            }
            Err(TransactionError::VersionAlreadyExists(_)) => {
                // Another writer committed first: an append conflicts with no commit,
                // but one may have changed what the append relies on.
                head = match read_head(log_store.as_ref()).await? {
                    Some(head) if takes_plain_append(&head) => head,
                    _ => {
                        return Err(DeltaTableError::Generic(format!(
                            "the table changed under the append after version {}: \
                             its protocol or schema no longer takes generated rows",
                            head.version()
                        )));
                    }
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(DeltaTableError::Generic(format!(
        "other writers took every version the append tried ({COMMIT_ATTEMPTS} attempts)"
    )))
}

/// Whether the table of `head` takes the generator's rows as a plain append: its
/// schema is the generator's (no column metadata: no invariants, column mapping,
/// generated or identity columns, defaults), partitioned by `event_time` alone, and
/// its protocol asks of a writer of new files nothing but what such an append does.
fn takes_plain_append(head: &TableConfiguration) -> bool {
    if head.metadata().partition_columns() != [PARTITION_COLUMN] {
        return false;
    }
    let schema = head.logical_schema();
    let expected = device_schema();
    let fields: Vec<_> = schema.fields().collect();
    let schema_matches = fields.len() == expected.fields().len()
        && fields.iter().zip(expected.fields()).all(|(field, want)| {
            field.name() == want.name()
                && field.data_type() == &DataType::STRING
                && (field.is_nullable() || !want.is_nullable())
                && field.metadata().is_empty()
        });
    if !schema_matches {
        return false;
    }
    let protocol = head.protocol();
    match protocol.min_writer_version() {
        // appendOnly and invariants (none: no column metadata).
        1 | 2 => true,
        7 => protocol.writer_features().is_some_and(|features| {
            features.iter().all(|feature| {
                matches!(
                    feature,
                    TableFeature::AppendOnly
                        | TableFeature::Invariants
                        | TableFeature::ChangeDataFeed
                        | TableFeature::DeletionVectors
                        | TableFeature::TimestampWithoutTimezone
                )
            })
        }),
        _ => false,
    }
}

/// The checkpoint of `version` and the log cleanup after it, when the table's
/// properties ask for them ([`latefill_core::storage::checkpoint_due`]). Best effort,
/// as in delta-rs: the commit has landed; readers replay a few more commits.
async fn checkpoint(
    log_store: &dyn LogStore,
    properties: &delta_kernel::table_properties::TableProperties,
    version: u64,
) {
    if !latefill_core::storage::checkpoint_due(properties, version) {
        return;
    }
    if let Err(e) = latefill_core::storage::write_checkpoint(log_store, version).await {
        tracing::warn!(version, error = %e, "generate: could not write a checkpoint");
        return;
    }
    if let Err(e) =
        latefill_core::storage::cleanup_expired_logs(log_store, properties, version).await
    {
        tracing::warn!(version, error = %e, "generate: log cleanup failed");
    }
}

fn json_error(e: serde_json::Error) -> DeltaTableError {
    DeltaTableError::Generic(format!("encoding the commit: {e}"))
}

/// The table's protocol and metadata at its latest version, read as cheaply as the
/// log allows: one listing of `_delta_log` (from the `_last_checkpoint` hint), then
/// the newest commits, newest first, until both are found; the newest checkpoint (by
/// the kernel) only for what those commits do not hold. `None` when there is no
/// table, or a log this reader leaves to the kernel and delta-rs (multi-part or V2
/// checkpoints, missing commits).
pub(crate) async fn read_head(log_store: &dyn LogStore) -> DeltaResult<Option<TableConfiguration>> {
    use futures::{StreamExt, TryStreamExt};
    use object_store::ObjectStoreExt;
    use object_store::path::Path;

    let store = log_store.object_store(None);
    let hint = match store.get(&Path::from("_delta_log/_last_checkpoint")).await {
        Ok(found) => {
            let bytes = found.bytes().await?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["version"].as_u64())
        }
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let prefix = Path::from("_delta_log");
    let listing: Vec<_> = match hint {
        Some(version) => {
            let offset = Path::from(format!("_delta_log/{:020}", version.saturating_sub(1)));
            store
                .list_with_offset(Some(&prefix), &offset)
                .try_collect()
                .await?
        }
        None => store.list(Some(&prefix)).try_collect().await?,
    };
    let mut commits = std::collections::BTreeSet::new();
    let mut checkpoint = None;
    let mut other_checkpoints = false;
    for meta in &listing {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let Some((digits, rest)) = name.split_once('.') else {
            continue;
        };
        let Ok(version) = digits.parse::<u64>() else {
            continue;
        };
        if digits.len() != 20 {
            continue;
        }
        match rest {
            "json" => {
                commits.insert(version);
            }
            "checkpoint.parquet" => checkpoint = checkpoint.max(Some(version)),
            _ if rest.starts_with("checkpoint.") => {
                other_checkpoints = true;
            }
            _ => {}
        }
    }
    let Some(&latest) = commits.last() else {
        return Ok(None);
    };
    let oldest = checkpoint.map_or(0, |c| c + 1);
    if other_checkpoints || checkpoint.is_some_and(|c| c > latest) {
        return Ok(None);
    }
    if (oldest..=latest).any(|v| !commits.contains(&v)) {
        return Ok(None);
    }

    let (mut protocol, mut metadata) = (None, None);
    let mut newest_first = futures::stream::iter((oldest..=latest).rev())
        .map(|version| {
            let store = store.clone();
            async move {
                let path = Path::from(format!("_delta_log/{version:020}.json"));
                store.get(&path).await?.bytes().await
            }
        })
        .buffered(8);
    while protocol.is_none() || metadata.is_none() {
        let Some(bytes) = newest_first.try_next().await? else {
            break;
        };
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if !line.starts_with(b"{\"protocol\"") && !line.starts_with(b"{\"metaData\"") {
                continue;
            }
            match serde_json::from_slice::<Action>(line) {
                Ok(Action::Protocol(p)) => protocol = protocol.or(Some(p)),
                Ok(Action::Metadata(m)) => metadata = metadata.or(Some(m)),
                Ok(_) => {}
                Err(_) => return Ok(None),
            }
        }
    }
    drop(newest_first);
    if let (Some(version), true) = (checkpoint, protocol.is_none() || metadata.is_none()) {
        let at_checkpoint = Snapshot::try_new(log_store, Some(version)).await?;
        protocol = protocol.or_else(|| Some(at_checkpoint.protocol().clone()));
        metadata = metadata.or_else(|| Some(at_checkpoint.metadata().clone()));
    }
    let (Some(protocol), Some(metadata)) = (protocol, metadata) else {
        return Ok(None);
    };
    let mut root = log_store.root_url().clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    Ok(Some(TableConfiguration::try_new(
        metadata, protocol, root, latest,
    )?))
}
