//! `latefill demo`: the story of late data found and reprocessed, printed.

use crate::cli::args::{DemoArgs, Output};
use crate::cli::render::{describe_run, emit_line, processed_at, status_text};

pub(crate) async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let DemoArgs { dir, output } = args;
    let dir = dir.as_path();
    use crate::cli::demo::DemoEvent;
    let pipeline = crate::cli::demo::prepare(dir)?;
    let text = output == Output::Text;
    if text {
        out!("latefill demo in {}", dir.display());
        out!("  source {}", pipeline.source);
        out!("  target {}", pipeline.target);
        out!("  state  {}", pipeline.state);
        out!(
            "\n1. {} rows a day for {} days, each day run as it arrives:",
            crate::cli::demo::DEMO_ROWS_PER_DAY,
            crate::cli::demo::demo_dates().len(),
        );
        out!(
            "  {:<10}  {:>14}  {:>8}  {:>8}  {:>14}  {:>8}",
            "date",
            "source version",
            "rows in",
            "rows out",
            "target version",
            "ms"
        );
    }
    let mut step = 1;
    let events = crate::cli::demo::run(&pipeline, |event| {
        if !text {
            return;
        }
        match event {
            DemoEvent::Day { date, run, .. } => out!(
                "  {:<10}  {:>14}  {:>8}  {:>8}  {:>14}  {:>8}",
                date,
                run.source_version,
                run.rows_read,
                run.rows_written,
                run.target_version,
                run.duration_ms
            ),
            DemoEvent::LateData {
                date,
                rows,
                source_version,
            } => {
                if step == 1 || step == 3 {
                    step += 1;
                    out!("\n{step}. late data arrives:");
                }
                out!("  appended {rows} late rows to {date} (source version {source_version})");
            }
            DemoEvent::Rerun {
                date,
                outcome,
                matches_full_recomputation,
            } => {
                step += 1;
                out!("\n{step}. latefill run --date {date}:");
                out!("  {}", describe_run(&outcome.run));
                for l in &outcome.late {
                    out!(
                        "  late: {} (processed at {}, changed at {})",
                        l.partition,
                        processed_at(l),
                        l.last_change_version
                    );
                }
                for r in &outcome.backfilled {
                    out!("  backfilled: {}", describe_run(r));
                }
                out!(
                    "  target equals a fresh full recomputation: {}",
                    if *matches_full_recomputation {
                        "yes"
                    } else {
                        "NO"
                    }
                );
            }
            DemoEvent::Detect { date, late } => {
                step += 1;
                let names: Vec<&str> = late.iter().map(|l| l.partition.as_str()).collect();
                out!("\n{step}. latefill detect --date {date}: plans {names:?}");
            }
            DemoEvent::Status { after, rows } => {
                out!("\n  state after {after}:");
                emit_line(status_text(rows).trim_end_matches('\n'));
            }
        }
    })
    .await?;
    match output {
        Output::Json => out!("{}", serde_json::json!({ "events": events })),
        Output::Text => {
            out!("\ndone. Try: latefill status    latefill run --date 2024-01-08 --allow-empty");
        }
    }
    Ok(())
}
