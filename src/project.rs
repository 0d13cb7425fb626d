//! Projects: several pipelines worked on together, upstream before downstream.
//!
//! A project's pipelines come in dependency order
//! ([`Project::pipelines`](latefill_executor::Project::pipelines)): a pipeline reading
//! another's target comes after it, so that a past partition the upstream rewrites is
//! a late change its downstream sees in the same run. [`InOrder`] keeps the one rule
//! that walk needs: a pipeline that reads a target whose pipeline failed is not run
//! (it would publish from a stale input), and counts as failed in its turn.

use latefill_executor::{Pipeline, same_table};
use url::Url;

/// Why a pipeline of a project was not run.
pub const UPSTREAM_FAILED: &str = "not run: a pipeline it reads from failed";

/// The walk over a project's pipelines, upstream first: which may run, given which
/// failed before them.
#[derive(Debug, Default, Clone)]
pub struct InOrder {
    failed_targets: Vec<Url>,
}

impl InOrder {
    /// A walk where nothing has failed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Some(reason)` when `pipeline` must not run: it reads the target of a pipeline
    /// that failed (or was not run). It then counts as failed, so what reads its own
    /// target is not run either.
    pub fn blocked(&mut self, pipeline: &Pipeline) -> Option<&'static str> {
        let blocked = self
            .failed_targets
            .iter()
            .any(|t| same_table(t, &pipeline.source));
        if blocked {
            self.failed(pipeline);
        }
        blocked.then_some(UPSTREAM_FAILED)
    }

    /// Records that `pipeline` failed.
    pub fn failed(&mut self, pipeline: &Pipeline) {
        self.failed_targets.push(pipeline.target.clone());
    }
}
