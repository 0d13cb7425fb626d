//! The plain append: generated rows added to an existing table at the cost of writing
//! them.
//!
//! delta-rs's write operation loads the whole table (every file of every version) to
//! append one file, plans the write through DataFusion, and reads its own commit back:
//! most of a generated day's cost, growing with the table's versions. An append needs
//! none of that. It reads the table's protocol and metadata (the kernel reads them
//! from the newest checkpoint and the commits after, nothing else), writes the data
//! files, and puts the next version's commit, put-if-absent; a version taken meanwhile
//! is found by that put, and the append goes again from a fresh read. Checkpoints and
//! log cleanup follow delta-rs's rules.
//!
//! It takes only tables it can append to as delta-rs would: the generator's schema,
//! partitioned by `event_time`, with a protocol whose writer features a plain append
//! honours. Any other table ([`Plain::Unsupported`]) goes through delta-rs's write,
//! which creates, checks and refuses as it always did.

use std::sync::Arc;

use delta_kernel::schema::DataType;
use delta_kernel::table_features::TableFeature;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::Action;
use deltalake::kernel::Snapshot;
use deltalake::kernel::transaction::TransactionError;
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
    let mut snapshot = match Snapshot::try_new(log_store.as_ref(), None).await {
        Ok(snapshot) => snapshot,
        Err(DeltaTableError::NotATable(_)) => return Ok(Plain::Unsupported),
        Err(e) => return Err(e),
    };
    if !takes_plain_append(&snapshot) {
        return Ok(Plain::Unsupported);
    }

    let properties = snapshot.table_configuration().table_properties();
    let stats = WriterStatsConfig::from_config(snapshot.table_configuration());
    let config = WriterConfig::new(
        device_schema(),
        vec![PARTITION_COLUMN.to_owned()],
        None,
        Some(properties.target_file_size()),
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
        let version = snapshot.version() + 1;
        let entry = CommitOrBytes::LogBytes(commit.clone());
        match log_store
            .write_commit_entry(version, entry, uuid::Uuid::new_v4())
            .await
        {
            Ok(()) => {
                let properties = snapshot.table_configuration().table_properties();
                checkpoint(log_store.as_ref(), properties, version).await;
                return Ok(Plain::Committed(version));
            }
            Err(TransactionError::VersionAlreadyExists(_)) => {
                // Another writer committed first: an append conflicts with no commit,
                // but one may have changed what the append relies on.
                snapshot = Snapshot::try_new(log_store.as_ref(), None).await?;
                if !takes_plain_append(&snapshot) {
                    return Err(DeltaTableError::Generic(format!(
                        "the table changed under the append at version {}: \
                         its protocol or schema no longer takes generated rows",
                        snapshot.version()
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(DeltaTableError::Generic(format!(
        "other writers took every version the append tried ({COMMIT_ATTEMPTS} attempts)"
    )))
}

/// Whether the table of `snapshot` takes the generator's rows as a plain append: its
/// schema is the generator's (no column metadata: no invariants, column mapping,
/// generated or identity columns, defaults), partitioned by `event_time` alone, and
/// its protocol asks of a writer of new files nothing but what such an append does.
fn takes_plain_append(snapshot: &Snapshot) -> bool {
    let metadata = snapshot.metadata();
    if metadata.partition_columns() != [PARTITION_COLUMN] {
        return false;
    }
    let schema = snapshot.schema();
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
    let protocol = snapshot.protocol();
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
