//! `latefill backfill`: a range, N partitions at a time, with a progress bar on a
//! terminal and JSON lines for machines.

use std::future::IntoFuture;
use std::io::IsTerminal;

use latefill::PartitionDate;
use latefill::backfill::{BackfillEvent, Batching, Selection};
use latefill::engine::Engine;

use crate::args::{BackfillArgs, Output};
use crate::exit::UsageError;
use crate::exit::{DataFailure, Interrupted};
use crate::render::{describe_run, emit_line};

pub(crate) async fn backfill_pipeline(
    engine: Engine,
    (from, to): (PartitionDate, PartitionDate),
    concurrency: usize,
    batching: Batching,
    selection: Selection,
    output: Output,
) -> anyhow::Result<()> {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let stop = Arc::new(AtomicBool::new(false));
    // Partitions this run claimed and has not finished with: released on a second signal.
    let held: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let bar = (output == Output::Text && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} partitions  {msg}  {per_sec}  ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar
    });
    let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listener = {
        let (bar, held, rows) = (bar.clone(), held.clone(), rows.clone());
        let name = engine.pipeline().name.clone();
        move |event: &BackfillEvent| {
            let mut running = held.lock().expect("held-claims lock");
            match event {
                BackfillEvent::Planned { partitions } => {
                    if let Some(bar) = &bar {
                        bar.set_length(partitions.len() as u64);
                    }
                }
                BackfillEvent::Claimed { partitions } => {
                    running.extend(partitions.iter().cloned());
                }
                BackfillEvent::Started { .. } => {}
                BackfillEvent::Processed(r) => {
                    running.remove(&r.partition);
                    rows.fetch_add(r.rows_read, Ordering::Relaxed);
                }
                BackfillEvent::Skipped(s) | BackfillEvent::Failed(s) => {
                    running.remove(&s.partition);
                }
            }
            match (&bar, output) {
                (_, Output::Json) => {
                    let mut json = serde_json::to_value(event).expect("events serialise");
                    json["pipeline"] = name.as_str().into();
                    emit_line(&json.to_string())
                }
                (Some(bar), _) => {
                    if !matches!(
                        event,
                        BackfillEvent::Planned { .. }
                            | BackfillEvent::Claimed { .. }
                            | BackfillEvent::Started { .. }
                    ) {
                        bar.inc(1);
                    }
                    bar.set_message(format!("{} rows", rows.load(Ordering::Relaxed)));
                    if let BackfillEvent::Failed(f) = event {
                        bar.println(format!("FAILED {}: {}", f.partition, f.reason));
                    }
                }
                (None, Output::Text) => match event {
                    BackfillEvent::Processed(r) => emit_line(&describe_run(r)),
                    BackfillEvent::Skipped(s) => {
                        emit_line(&format!("skipped {}: {}", s.partition, s.reason))
                    }
                    BackfillEvent::Failed(f) => {
                        emit_line(&format!("FAILED {}: {}", f.partition, f.reason))
                    }
                    BackfillEvent::Planned { partitions } => {
                        emit_line(&format!("{} partition(s) to process", partitions.len()))
                    }
                    BackfillEvent::Claimed { .. } | BackfillEvent::Started { .. } => {}
                },
            }
        }
    };
    let run = engine
        .backfill(from, to)
        .with_concurrency(concurrency)
        .with_batching(batching)
        .with_selection(selection)
        .with_stop(stop.clone())
        .with_listener(listener);
    let mut run = std::pin::pin!(run.into_future());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let report = loop {
        tokio::select! {
            report = &mut run => break report?,
            _ = async { tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = terminate.recv() => {} } } => {
                if !stop.swap(true, Ordering::SeqCst) {
                    eprintln!("interrupt: no new partitions; finishing the running ones (interrupt again to abandon them)");
                    continue;
                }
                // Second signal: abandon the running partitions and release their claims
                // and those of the partitions claimed and not started.
                let running: Vec<String> = held.lock().expect("held-claims lock").iter().cloned().collect();
                for partition in &running {
                    if let Err(e) = engine.state().release(partition, engine.run_id(), "interrupted").await {
                        tracing::warn!(%partition, error = %e, "could not release the claim; it expires with its lease");
                    }
                }
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(Interrupted(format!("abandoned {} running partition(s) and released their claims", running.len())).into());
            }
        }
    };
    if let Some(bar) = &bar {
        bar.finish();
    }
    match output {
        Output::Json => out!(
            "{}",
            serde_json::json!({
                "event": "summary",
                "pipeline": engine.pipeline().name,
                "planned": report.planned.len(),
                "processed": report.processed.len(),
                "skipped": report.skipped.len(),
                "failed": report.failed.len(),
                "interrupted": report.interrupted,
                "duration_ms": report.duration_ms,
            })
        ),
        Output::Text => out!(
            "backfill of {} {from}..{to}: {} planned, {} processed, {} skipped, {} failed in {} ms",
            engine.pipeline().name,
            report.planned.len(),
            report.processed.len(),
            report.skipped.len(),
            report.failed.len(),
            report.duration_ms
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
        output,
    } = args;
    let (pipelines, _) = config.load_all()?;
    let mut ranges = Vec::new();
    for pipeline in &pipelines {
        let (from, to) = (pipeline.parse_date(&from)?, pipeline.parse_date(&to)?);
        if from > to {
            return Err(UsageError(format!(
                "--from {from} is after --to {to}: the range would be empty"
            ))
            .into());
        }
        ranges.push((from, to));
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
    for (pipeline, range) in pipelines.into_iter().zip(ranges) {
        let engine =
            Engine::new(pipeline).with_lease(chrono::Duration::seconds(i64::from(lease_seconds)));
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
