//! `latefill detect`: the late partitions before a date, planned; with
//! `--backfill-config`, claimed and handed out to a scheduler.

use crate::cli::args::{DetectArgs, Output};
use crate::cli::exit::Interrupted;
use crate::cli::render::print_detection;
use crate::cli::signals::{self, until_signalled};
use crate::engine::RunControl;
use crate::executor;
use crate::executor::Session;

pub(crate) async fn detect(args: DetectArgs) -> anyhow::Result<()> {
    let DetectArgs {
        config,
        date,
        late,
        backfill_config,
        output,
    } = args;
    let (pipelines, _) =
        config.load_for(&[backfill_config.as_ref().map(|_| "--backfill-config")])?;
    let several = pipelines.len() > 1;
    let dates = pipelines
        .iter()
        .map(|p| p.parse_date(&date))
        .collect::<executor::Result<Vec<_>>>()?;
    // One session for the project: what an upstream pipeline wrote, its downstream
    // advances instead of reading afresh.
    let session = Session::new();
    for (pipeline, date) in pipelines.into_iter().zip(dates) {
        let name = pipeline.name.clone();
        let engine = late.engine(pipeline, &session);
        let control = RunControl::default();
        let work = async {
            let detection = engine
                .detect(date)
                .with_lookback_days(late.lookback)
                .await?;
            let plan = match &backfill_config {
                Some(path) => engine.hand_out(&detection.late, path, &control).await?,
                None => None,
            };
            anyhow::Ok((detection, plan))
        };
        let (detection, plan) = match backfill_config {
            // Handing out claims: a scheduler's signal gives them back.
            Some(_) => until_signalled(&engine, &control, signals::RUN, work).await??,
            None => work.await?,
        };
        if control.is_stopped() {
            let taken = match &backfill_config {
                Some(path) => engine.take_back(path).await?,
                None => false,
            };
            tracing::debug!(taken_back = ?taken, "interrupted after the hand-out");
            return Err(Interrupted(
                "nothing handed out: no plan file written, and any claims made given back".into(),
            )
            .into());
        }
        match output {
            Output::Json => {
                let mut json = serde_json::to_value(&detection)?;
                json["pipeline"] = name.into();
                if let Some(plan) = &plan {
                    json["backfill_config"] = serde_json::to_value(plan)?;
                }
                out!("{json}");
            }
            Output::Text => {
                if several {
                    out!("pipeline {name}");
                }
                print_detection(&detection.detection, &detection.late);
                if !detection.stale.is_empty() {
                    out!(
                        "stale: {} partition(s) processed by another version of the SQL \
                     ({}); `latefill backfill --stale` reprocesses them",
                        detection.stale.len(),
                        detection
                            .stale
                            .iter()
                            .map(|p| p.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if let (Some(path), Some(plan)) = (&backfill_config, &plan) {
                    out!(
                        "claimed {} partition(s) for run {} and wrote {}",
                        plan.partitions.len(),
                        plan.run_id,
                        path.display()
                    );
                }
            }
        }
    }
    Ok(())
}
