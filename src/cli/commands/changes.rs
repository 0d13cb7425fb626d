//! `latefill changes`: per partition of a Delta table, the last version its data
//! changed at.

use std::path::Path;

use crate::cli::args::{ChangesArgs, Output};
use crate::cli::exit::UsageError;
use crate::executor;

pub(crate) async fn changes(args: ChangesArgs) -> anyhow::Result<()> {
    let ChangesArgs {
        table,
        since_version,
        format,
    } = args;
    let table = table.as_str();
    let url = executor::resolve_location("source", table, Path::new("."))?;
    if let Some(reason) = crate::storage::local_location_problem(&url) {
        return Err(UsageError(format!("--table {table}: {reason}")).into());
    }
    let changes = crate::detector::detect_changes(&url)
        .with_since_version(since_version.map(Into::into))
        .await?;
    match format {
        Output::Json => out!("{}", serde_json::to_string_pretty(&changes)?),
        Output::Text => {
            out!(
                "{url} at version {}: {} partitions{}",
                changes.table_version,
                changes.partitions.len(),
                since_version.map_or(String::new(), |v| format!(" changed after version {v}"))
            );
            if let Some(reason) = &changes.inexact_reason {
                out!("not exact: {reason}");
            }
            let width = changes
                .partitions
                .iter()
                .map(|p| p.partition.as_str().len())
                .max()
                .unwrap_or(9)
                .max(9);
            out!("  {:<width$}  {:>11}  exact", "partition", "last change");
            for p in &changes.partitions {
                out!(
                    "  {:<width$}  {:>11}  {}",
                    p.partition,
                    p.last_change_version,
                    if p.exact { "yes" } else { "no (conservative)" }
                );
            }
        }
    }
    Ok(())
}
