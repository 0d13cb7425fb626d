//! `latefill status`: the state table of each pipeline, as text, JSON or a page.

use crate::cli::args::{StatusArgs, StatusFormat, date_range};
use crate::cli::exit::UsageError;
use crate::cli::render::{emit_line, status_text};
use crate::cli::status_page::PipelineStatus;
use crate::engine::Engine;
use crate::executor::Session;

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let StatusArgs {
        config,
        format,
        out,
        from,
        to,
        state,
    } = args;
    let config_path = config.config.clone();
    let (pipelines, _) = config.load_all()?;
    let several = pipelines.len() > 1;
    let mut all = Vec::new();
    // One session for the project: what an upstream pipeline wrote, its downstream
    // advances instead of reading afresh.
    let session = Session::new();
    for pipeline in pipelines {
        let (from, to) = date_range(&pipeline, from.as_deref(), to.as_deref())?;
        let mut rows = Engine::new(pipeline.clone())
            .with_session(session.clone())
            .status()
            .await?;
        rows.retain(|row| {
            let date = row.partition.date();
            from.is_none_or(|from| date >= from)
                && to.is_none_or(|to| date <= to)
                && (state.is_empty() || state.iter().any(|s| s.matches(row)))
        });
        all.push((pipeline, rows));
    }
    let text = match format {
        StatusFormat::Json => {
            let rows: Vec<_> = all.iter().flat_map(|(_, rows)| rows).collect();
            serde_json::to_string_pretty(&rows)? + "\n"
        }
        StatusFormat::Html => {
            // How late the data arrives: the source's whole log, read once for the
            // page. A log that cannot say leaves the view out, not the page.
            let mut lateness = Vec::with_capacity(all.len());
            for (pipeline, _) in &all {
                let report = Engine::new(pipeline.clone())
                    .with_session(session.clone())
                    .lateness(None, None)
                    .await;
                lateness.push(report.map_err(|e| {
                    tracing::warn!(pipeline = %pipeline.name, error = %e, "no lateness view");
                }).ok());
            }
            let pages: Vec<_> = all
                .iter()
                .zip(&lateness)
                .map(|((pipeline, rows), lateness)| PipelineStatus {
                    pipeline,
                    rows,
                    lateness: lateness.as_ref(),
                })
                .collect();
            crate::cli::status_page::render(&pages, chrono::Utc::now(), config_path.as_deref())?
        }
        StatusFormat::Text => {
            let mut text = String::new();
            for (pipeline, rows) in &all {
                if several {
                    text += &format!("pipeline {}\n", pipeline.name);
                }
                text += &status_text(rows);
            }
            text
        }
    };
    match out {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))?,
        None => emit_line(text.trim_end_matches('\n')),
    }
    Ok(())
}
