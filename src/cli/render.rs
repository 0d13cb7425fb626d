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
    for line in audit_warnings(&o.run) {
        out!("{line}");
    }
    print_detection(&o.detection, &o.late);
    for r in &o.backfilled {
        out!("backfilled: {}", describe_run(r));
        for line in audit_warnings(r) {
            out!("{line}");
        }
        if let (Some(crate::executor::Method::Replace), Some(reason)) =
            (r.strategy, &r.strategy_reason)
        {
            out!("  recomputed whole, not updated from its late rows: {reason}");
        }
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

/// A line for each audit of severity `warn` that failed on run `r`, with a sample row.
pub(crate) fn audit_warnings(r: &RunReport) -> Vec<String> {
    r.audits
        .iter()
        .filter(|a| !a.passed)
        .map(|a| {
            let sample = a
                .samples
                .first()
                .map_or(String::new(), |s| format!("; e.g. {s}"));
            format!("  audit warning {}: {}{sample}", a.name, a.message)
        })
        .collect()
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
        if let Some(choice) = &l.strategy {
            out!("  {}", describe_choice(choice));
        }
    }
}

/// What a run of a partition would do, and why: a line for `detect` and plans.
pub(crate) fn describe_choice(c: &crate::executor::Choice) -> String {
    let reads = |r: &crate::executor::Reads| {
        format!(
            "{} rows, {} file{}, {}",
            r.rows.map_or("?".to_owned(), |n| n.to_string()),
            r.files,
            if r.files == 1 { "" } else { "s" },
            bytes(r.bytes)
        )
    };
    match (c.strategy, &c.incremental) {
        (crate::executor::Method::Incremental, Some(update)) => format!(
            "incremental: update from the late rows and the target's rows ({}) instead of \
             recomputing ({})",
            reads(update),
            reads(&c.replace)
        ),
        _ => format!("replace: recompute ({}): {}", reads(&c.replace), c.reason),
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
        "{:<width$}  {:<11}  {:>14}  {:>11}  {:<4}  {:>8}  {:<16}  {:>9}  {:>11}  {:>11}  note",
        "partition",
        "status",
        "source version",
        "last change",
        "late",
        "attempts",
        "updated (UTC)",
        "took",
        "rows in",
        "rows out"
    );
    let opt = |v: Option<crate::TableVersion>| v.map_or("-".to_owned(), |v| v.to_string());
    for r in rows {
        let note = match (&r.lease_expires_at, &r.last_error) {
            (Some(until), _) => format!(
                "leased by {} until {until}",
                r.owner.as_deref().unwrap_or("?")
            ),
            (None, Some(error)) => format!("error: {error}"),
            _ if !r.audit_warnings().is_empty() => {
                format!("audit warning: {}", r.audit_warnings().join(", "))
            }
            _ if r.stale => "stale: processed by another version of the SQL".to_owned(),
            _ => String::new(),
        };
        // What the last completed run recorded; `-` before the first.
        let run = |field: &str| r.last_run.as_ref().and_then(|run| run[field].as_u64());
        let count =
            |field: &str| run(field).map_or("-".to_owned(), crate::cli::progress::thousands);
        let _ = writeln!(
            text,
            "{:<width$}  {:<11}  {:>14}  {:>11}  {:<4}  {:>8}  {:<16}  {:>9}  {:>11}  {:>11}  {note}",
            r.partition,
            r.status,
            opt(r.source_version),
            opt(r.last_change_version),
            if r.late { "yes" } else { "no" },
            r.attempts,
            r.updated_at
                .map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
            run("duration_ms").map_or("-".to_owned(), crate::cli::progress::duration),
            count("rows_read"),
            count("rows_written"),
        );
    }
    text
}

pub(crate) fn describe_run(r: &RunReport) -> String {
    let (verb, how) = match r.strategy {
        Some(crate::executor::Method::Incremental) => ("updated", " from its late rows"),
        Some(crate::executor::Method::Replace) => ("processed", ""),
        None => ("recovered", " (its commit had landed)"),
    };
    format!(
        "{verb} {}{how} at source version {}: {} rows in ({} file{}, {}), {} rows out, \
         target version {}, {} ms",
        r.partition,
        r.source_version,
        r.rows_read,
        r.files_read,
        if r.files_read == 1 { "" } else { "s" },
        bytes(r.bytes_read),
        r.rows_written,
        r.target_version,
        r.duration_ms
    )
}

/// `n` bytes for a reader: `512 B`, `12.3 kB`, `4.5 MB`, `1.2 GB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1_000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1_000.0;
    let mut unit = 0;
    while value >= 1_000.0 && unit + 1 < UNITS.len() {
        value /= 1_000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
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
