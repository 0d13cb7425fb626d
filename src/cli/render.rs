//! Text renderings of what the library returns, and the one way lines reach stdout.

use crate::cli::args::Output;
use crate::engine::{Engine, RunOutcome};
use crate::executor::RunReport;

/// Prints a line on stdout; a reader that went away (`| head`) must neither stop the
/// work nor turn a success into a panic, so write errors are ignored.
pub(crate) fn emit_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

pub(crate) fn print_outcome(engine: &Engine, origin: &str, o: &RunOutcome) {
    out!("pipeline {} ({origin})", engine.pipeline().name);
    out!("{}", describe_run(&o.run));
    print_detection(&o.detection, &o.late);
    for r in &o.backfilled {
        out!("backfilled: {}", describe_run(r));
    }
    for s in &o.skipped {
        out!("skipped {}: {}", s.partition, s.reason);
    }
    for f in &o.failed {
        out!("FAILED {}: {}", f.partition, f.reason);
    }
    if let Some(path) = &o.backfill_config {
        out!(
            "wrote the plan for an external scheduler to {}",
            path.display()
        );
    }
}

/// "version N", or what a missing version means.
pub(crate) fn processed_at(late: &crate::plan::LatePartition) -> String {
    match late.processed_at {
        Some(v) => format!("version {v}"),
        None => "a version of the replaced source".into(),
    }
}

pub(crate) fn print_detection(
    d: &crate::engine::DetectionSummary,
    late: &[crate::plan::LatePartition],
) {
    out!(
        "detection: source version {}, {} commit(s) read ({}){}",
        d.table_version,
        d.commits_read,
        d.mode,
        if d.exact { "" } else { ", NOT EXACT" }
    );
    if let Some(reason) = &d.inexact_reason {
        out!("  {reason}");
    }
    for partition in &d.unrecognised {
        out!("  warning: {partition}; it is never planned: fix its value in the source");
    }
    if let Some(reason) = &d.source_replaced {
        out!("  the source was REPLACED ({reason}): its partitions are judged by their files");
    }
    if late.is_empty() {
        out!("late partitions: none");
    }
    for l in late {
        out!(
            "late: {} (processed at {}, changed at {}{})",
            l.partition,
            processed_at(l),
            l.last_change_version,
            if l.exact { "" } else { " or before" }
        );
    }
}

/// The status rows as a table of text, a line each.
pub(crate) fn status_text(rows: &[crate::engine::StatusRow]) -> String {
    use std::fmt::Write;
    let width = rows
        .iter()
        .map(|r| r.partition.as_str().len())
        .max()
        .unwrap_or(9)
        .max(9);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<width$}  {:<11}  {:>14}  {:>11}  {:<4}  {:>8}  note",
        "partition", "status", "source version", "last change", "late", "attempts"
    );
    let opt = |v: Option<crate::TableVersion>| v.map_or("-".to_owned(), |v| v.to_string());
    for r in rows {
        let note = match (&r.lease_expires_at, &r.last_error) {
            (Some(until), _) => format!(
                "leased by {} until {until}",
                r.owner.as_deref().unwrap_or("?")
            ),
            (None, Some(error)) => format!("error: {error}"),
            _ if r.stale => "stale: processed by another version of the SQL".to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "{:<width$}  {:<11}  {:>14}  {:>11}  {:<4}  {:>8}  {note}",
            r.partition,
            r.status,
            opt(r.source_version),
            opt(r.last_change_version),
            if r.late { "yes" } else { "no" },
            r.attempts
        );
    }
    text
}

pub(crate) fn describe_run(r: &RunReport) -> String {
    format!(
        "processed {} at source version {}: {} rows in ({} file{}), {} rows out, \
         target version {}, {} ms",
        r.partition,
        r.source_version,
        r.rows_read,
        r.files_read,
        if r.files_read == 1 { "" } else { "s" },
        r.rows_written,
        r.target_version,
        r.duration_ms
    )
}

/// What a repair by hand changed: `text`, or the row as it was in JSON.
pub(crate) fn print_repair(
    engine: &Engine,
    done: &str,
    name: &crate::PartitionKey,
    before: &crate::state::PartitionState,
    format: Output,
    text: &str,
) {
    match format {
        Output::Json => out!(
            "{}",
            serde_json::json!({done: name, "pipeline": engine.pipeline().name, "before": before})
        ),
        Output::Text => out!("{text}"),
    }
}
