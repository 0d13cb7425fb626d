//! Handing late partitions out to a scheduler: claimed here, each processed by a task
//! of its own (`latefill run --date P --run-id ID --no-backfill`), and taken back when
//! the hand-out is stopped before the scheduler reads it.

use std::path::Path;

use latefill_core::{PartitionKey, RunId};
use serde::Serialize;

use super::{Engine, Error, Result, RunControl};
use crate::plan::LatePartition;

/// A plan file as read back: names, as the file holds them.
#[derive(serde::Deserialize)]
struct PlanFile {
    partitions: Vec<String>,
    run_id: String,
}

/// The plan file for an external scheduler.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackfillPlan {
    /// The partitions to reprocess, claimed for `run_id`, written by name
    /// (`event_time=2024-01-03`); `latefill run --date` takes either form.
    pub partitions: Vec<PartitionKey>,
    /// Their periods alone (`2024-01-03`), in the same order.
    #[serde(default)]
    pub periods: Vec<String>,
    /// Pass it as `latefill run --run-id` so the run takes over the claim.
    pub run_id: RunId,
}

impl Engine {
    /// Claims the planned partitions (all or none) for this run and writes the plan
    /// file, so that no concurrent detection hands them out again until the claims
    /// end or expire.
    ///
    /// `None` when `control` was stopped first: nothing is claimed and no file
    /// written. The claims are held in `control` until the plan file is written, so
    /// that a second signal gives them back; a caller stopped after that gives the
    /// plan back with [`Engine::take_back`].
    pub async fn hand_out(
        &self,
        late: &[LatePartition],
        path: &Path,
        control: &RunControl,
    ) -> Result<Option<BackfillPlan>> {
        let plan = BackfillPlan {
            partitions: late.iter().map(|l| l.partition.clone()).collect(),
            periods: late.iter().map(|l| l.period.clone()).collect(),
            run_id: self.run_id.clone(),
        };
        let partitions = &plan.partitions;
        if !partitions.is_empty() {
            latefill_executor::preflight(&self.session, &self.pipeline, None).await?;
            if control.is_stopped() {
                return Ok(None);
            }
            self.state.claim(partitions, &self.run_id).await?;
            partitions.iter().for_each(|p| control.hold(p));
            if latefill_executor::pausepoint("handed-out").await {
                // The signal that ended the pause reaches the command's own handler
                // on another task; let it ask for the stop before deciding.
                for _ in 0..5_000 {
                    if control.is_stopped() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        }
        if control.is_stopped() {
            self.give_back(partitions, &self.run_id).await;
            partitions.iter().for_each(|p| control.let_go(p));
            return Ok(None);
        }
        let io = |source| Error::PlanFile {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_string_pretty(&plan).expect("a plan serialises");
        std::fs::write(&tmp, json + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        partitions.iter().for_each(|p| control.let_go(p));
        Ok(Some(plan))
    }

    /// Takes back a plan handed out by [`Engine::hand_out`] that will not reach its
    /// scheduler (the command was stopped): removes the plan file and gives back its
    /// claims (each becomes `failed` as `interrupted`, and can be claimed at once).
    /// Returns whether there was a plan file to take back.
    pub async fn take_back(&self, path: &Path) -> Result<bool> {
        let io = |source| Error::PlanFile {
            path: path.to_owned(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        let plan: PlanFile = serde_json::from_str(&text)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        std::fs::remove_file(path).map_err(io)?;
        let partitioning = &self.pipeline.partitioning;
        let partitions: Vec<PartitionKey> = plan
            .partitions
            .iter()
            .filter_map(|name| {
                let key = partitioning.parse_name(name);
                if key.is_none() {
                    tracing::warn!(partition = %name, path = %path.display(), "the plan file names no partition of this pipeline; not given back");
                }
                key
            })
            .collect();
        self.give_back(&partitions, &plan.run_id).await;
        Ok(true)
    }

    /// Gives back the claims of `run_id` on `partitions` that it still holds.
    async fn give_back(&self, partitions: &[PartitionKey], run_id: &str) {
        for partition in partitions {
            if let Err(e) = self.state.release(partition, run_id, "interrupted").await {
                tracing::warn!(%partition, error = %e, "could not give the claim back; it expires with its lease");
            }
        }
    }
}
