//! `latefill run`: a date of each pipeline, upstream first, then what is late before it.

use std::future::IntoFuture;

use crate::cli::args::{Output, RunArgs};
use crate::cli::exit::{DataFailure, Interrupted};
use crate::cli::render::print_outcome;
use crate::cli::signals::{self, until_signalled};
use crate::engine::{LateHandling, RunControl};
use crate::executor;
use crate::executor::Session;
use crate::project::InOrder;

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        config,
        date,
        source_version,
        allow_empty,
        late,
        no_backfill,
        backfill_config,
        run_id,
        output,
    } = args;
    // Validate every argument before any storage is touched.
    let (pipelines, origin) = config.load_for(&[
        source_version.map(|_| "--source-version"),
        backfill_config.as_ref().map(|_| "--backfill-config"),
        run_id.as_ref().map(|_| "--run-id"),
    ])?;
    let dates = pipelines
        .iter()
        .map(|p| p.parse_date(&date))
        .collect::<executor::Result<Vec<_>>>()?;
    let backfill = match (no_backfill, backfill_config) {
        (_, Some(path)) => LateHandling::PlanFile(path),
        (true, None) => LateHandling::ReportOnly,
        (false, None) => LateHandling::InProcess,
    };
    // Upstream first: a past partition an upstream pipeline rewrites is a late
    // change of its downstream pipeline's source, reprocessed in this run too.
    // A pipeline whose upstream failed is not run.
    let several = pipelines.len() > 1;
    let mut first_error = None;
    let mut order = InOrder::new();
    let mut late_failures = 0;
    let mut interrupted = false;
    // One session for the project: what an upstream pipeline wrote, its downstream
    // advances instead of reading afresh.
    let session = Session::new();
    for (pipeline, date) in pipelines.into_iter().zip(dates) {
        let name = pipeline.name.clone();
        if interrupted {
            break;
        }
        if let Some(reason) = order.blocked(&pipeline) {
            match output {
                Output::Json => out!(
                    "{}",
                    serde_json::json!({"pipeline": name, "skipped": reason})
                ),
                Output::Text => out!("pipeline {name}: {reason}"),
            }
            continue;
        }
        let mut engine = late.engine(pipeline, &session);
        if let Some(id) = &run_id {
            engine = engine.with_run_id(id.clone());
        }
        let control = std::sync::Arc::new(RunControl::default());
        let mut run = engine
            .run_date(date)
            .with_allow_empty(allow_empty)
            .with_late(backfill.clone())
            .with_lookback_days(late.lookback)
            .with_control(control.clone());
        if let Some(version) = source_version {
            run = run.with_source_version(version);
        }
        let result = until_signalled(&engine, &control, signals::RUN, run.into_future()).await?;
        if control.is_stopped() {
            interrupted = true;
        }
        match result {
            Ok(mut outcome) => {
                // Stopped after handing out: the scheduler will not read the plan.
                if let (true, Some(path)) = (interrupted, &outcome.backfill_config)
                    && engine.take_back(path).await?
                {
                    // What was handed out is what was late.
                    outcome.backfill_config = None;
                    let late = outcome.late.iter().map(|l| crate::engine::Skipped {
                        partition: l.partition.clone(),
                        reason: "not handed out: the run was interrupted".into(),
                    });
                    outcome.skipped.extend(late);
                }
                match output {
                    Output::Json => {
                        let mut json = serde_json::to_value(&outcome)?;
                        json["pipeline"] = name.into();
                        out!("{json}");
                    }
                    Output::Text => print_outcome(&engine, &origin, &outcome),
                }
                late_failures += outcome.failed.len();
            }
            Err(e) => {
                order.failed(engine.pipeline());
                if first_error.is_some() {
                    eprintln!("error: pipeline {name}: {e}");
                }
                let e = anyhow::Error::from(e);
                first_error.get_or_insert(match several {
                    true => e.context(format!("pipeline {name}")),
                    false => e,
                });
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if interrupted {
        return Err(Interrupted(
            "the partition under way was finished and recorded; the late partitions \
             not started were left for the next run"
                .into(),
        )
        .into());
    }
    if late_failures > 0 {
        return Err(DataFailure(format!(
            "{late_failures} late partition(s) failed to reprocess"
        ))
        .into());
    }
    Ok(())
}
