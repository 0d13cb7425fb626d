//! Checkpoints and log cleanup after a commit written without delta-rs's post-commit
//! step: the same rules, from the log store alone.

use delta_kernel::table_properties::TableProperties;
use deltalake::logstore::LogStore;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaResult, DeltaTableError};

/// Whether the commit of `version` is due a checkpoint by the table's checkpoint
/// interval (`delta.checkpointInterval`, 100 unless set), as delta-rs's post-commit
/// step decides: when `version + 1` is a multiple of it.
pub fn checkpoint_due(properties: &TableProperties, version: u64) -> bool {
    (version + 1).is_multiple_of(properties.checkpoint_interval().get())
}

/// Writes the checkpoint of `version`, as delta-rs's `create_checkpoint` does, but
/// without a table loaded at that version: the kernel reads the log for it anyway.
pub async fn write_checkpoint(log_store: &dyn LogStore, version: u64) -> DeltaResult<()> {
    let root = log_store.transaction_url(None)?;
    let engine = log_store.engine(None);
    let snapshot = tokio::task::spawn_blocking({
        let engine = engine.clone();
        move || {
            delta_kernel::Snapshot::builder_for(root)
                .at_version(version)
                .build(engine.as_ref())
        }
    })
    .await
    .map_err(|e| DeltaTableError::Generic(e.to_string()))??;
    snapshot.checkpoint(engine.as_ref(), None)?;
    Ok(())
}

/// After the checkpoint of `version`, removes the commits and checkpoints older than
/// the table's log retention (`delta.logRetentionDuration`, 30 days unless set) when
/// `delta.enableExpiredLogCleanup` allows, as delta-rs's post-commit step does. Returns
/// how many files went; 0 when `version` was not due a checkpoint.
pub async fn cleanup_expired_logs(
    log_store: &dyn LogStore,
    properties: &TableProperties,
    version: u64,
) -> DeltaResult<usize> {
    if !checkpoint_due(properties, version) || !properties.enable_expired_log_cleanup() {
        return Ok(0);
    }
    let retention = properties.log_retention_duration();
    let cutoff = chrono::Utc::now().timestamp_millis() - retention.as_millis() as i64;
    deltalake::checkpoints::cleanup_expired_logs_for(version, log_store, cutoff, None).await
}
