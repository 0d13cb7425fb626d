//! `latefill backfill`: a range, N partitions at a time, with a progress bar on a
//! terminal and JSON lines for machines.

use std::future::IntoFuture;
use std::sync::Arc;

use crate::PartitionDate;
use crate::backfill::{Batching, Selection};
use crate::cli::args::{BackfillArgs, Output, date_range, with_overrides};
use crate::cli::exit::{DataFailure, Interrupted};
use crate::cli::progress::{Printer, thousands};
use crate::cli::render::describe_choice;
use crate::cli::signals::{self, until_signalled};
use crate::engine::{Engine, RunControl};
use crate::executor::Session;

/// One pipeline's backfill of `from..=to`, printed as it goes, under signals.
pub(crate) async fn backfill_pipeline(
    engine: Engine,
    (from, to): (PartitionDate, PartitionDate),
    concurrency: usize,
    batching: Batching,
    selection: Selection,
    output: Output,
) -> anyhow::Result<()> {
    let control = Arc::new(RunControl::default());
    let printer = Printer::new(engine.pipeline().name.clone(), output);
    let bar = printer.bar();
    let run = engine
        .backfill(from, to)
        .with_concurrency(concurrency)
        .with_batching(batching)
        .with_selection(selection)
        .with_control(control.clone())
        .with_listener(move |event| printer.print(event));
    let report =
        match until_signalled(&engine, &control, signals::BACKFILL, run.into_future()).await {
            Ok(report) => report?,
            Err(interrupted) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(interrupted);
            }
        };
    if let Some(bar) = &bar {
        bar.finish();
    }
    // Skipped: held by another run; not started: left when a signal stopped the
    // backfill (their claims given back).
    let not_started = report
        .skipped
        .iter()
        .filter(|s| s.reason.starts_with("not started"))
        .count();
    let held = report.skipped.len() - not_started;
    match output {
        Output::Json => out!(
            "{}",
            serde_json::json!({
                "event": "summary",
                "pipeline": engine.pipeline().name,
                "planned": report.planned.len(),
                "processed": report.processed.len(),
                "skipped": held,
                "not_started": not_started,
                "failed": report.failed.len(),
                "interrupted": report.interrupted,
                "duration_ms": report.duration_ms,
            })
        ),
        Output::Text => out!(
            "backfill of {} {from}..{to}: {} planned, {} processed, {held} skipped (held by \
             another run), {} failed{} in {}",
            engine.pipeline().name,
            thousands(report.planned.len() as u64),
            thousands(report.processed.len() as u64),
            report.failed.len(),
            if not_started > 0 {
                format!(", {not_started} not started (interrupted)")
            } else {
                String::new()
            },
            crate::cli::progress::duration(report.duration_ms),
        ),
    }
    if report.interrupted {
        return Err(Interrupted("stopped before the end; run it again to finish".into()).into());
    }
    if !report.failed.is_empty() {
        return Err(DataFailure(format!("{} partition(s) failed", report.failed.len())).into());
    }
    Ok(())
}

/// `backfill --dry-run`: what one pipeline's backfill would do, committing nothing.
async fn print_dry_run(
    engine: &Engine,
    (from, to): (PartitionDate, PartitionDate),
    selection: Selection,
    output: Output,
) -> anyhow::Result<()> {
    let name = &engine.pipeline().name;
    let planned = engine
        .backfill(from, to)
        .with_selection(selection)
        .dry_run()
        .await?;
    let incremental = planned
        .iter()
        .filter(|p| p.strategy.strategy == crate::executor::Method::Incremental)
        .count();
    for p in &planned {
        match output {
            Output::Json => {
                let mut line = serde_json::to_value(p)?;
                line["event"] = "would-process".into();
                line["pipeline"] = name.as_str().into();
                out!("{line}");
            }
            Output::Text => {
                out!("would process {} ({})", p.partition, p.why);
                out!("  {}", describe_choice(&p.strategy));
            }
        }
    }
    match output {
        Output::Json => out!(
            "{}",
            serde_json::json!({
                "event": "summary",
                "pipeline": name,
                "dry_run": true,
                "planned": planned.len(),
                "incremental": incremental,
                "replace": planned.len() - incremental,
            })
        ),
        Output::Text => out!(
            "dry run of the backfill of {name} {from}..{to}: {} partition(s) would be processed \
             ({incremental} updated from late rows, {} recomputed); nothing was written",
            planned.len(),
            planned.len() - incremental
        ),
    }
    Ok(())
}

pub(crate) async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let BackfillArgs {
        config,
        from,
        to,
        concurrency,
        only_late,
        all,
        stale,
        lease_seconds,
        batch_size,
        dry_run,
        strategy,
        memory_limit,
        output,
    } = args;
    let (pipelines, _) = config.load_all()?;
    let mut ranges = Vec::new();
    for pipeline in &pipelines {
        if let (Some(from), Some(to)) = date_range(pipeline, Some(&from), Some(&to))? {
            ranges.push((from, to));
        }
    }
    let selection = match (only_late, all, stale) {
        (true, _, _) => Selection::OnlyLate,
        (_, true, _) => Selection::All,
        (_, _, true) => Selection::Stale,
        _ => Selection::Pending,
    };
    let batching = Batching {
        size: usize::from(batch_size),
        ..Batching::default()
    };
    // Upstream first, so that what a downstream pipeline reads is up to date.
    // One session for the project: what an upstream pipeline wrote, its downstream
    // advances instead of reading afresh.
    let session = Session::new();
    for (pipeline, range) in pipelines.into_iter().zip(ranges) {
        let engine = Engine::new(with_overrides(pipeline, strategy, memory_limit))
            .with_lease(chrono::Duration::seconds(i64::from(lease_seconds)))
            .with_session(session.clone());
        if dry_run {
            print_dry_run(&engine, range, selection, output).await?;
            continue;
        }
        backfill_pipeline(
            engine,
            range,
            usize::from(concurrency),
            batching,
            selection,
            output,
        )
        .await?;
    }
    Ok(())
}
