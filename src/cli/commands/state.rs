//! `latefill state`: the state table's upkeep, and repair by hand.

use crate::PartitionKey;
use crate::cli::args::{RebuildArgs, ReleaseArgs, RepairTarget, ResetArgs};
use crate::cli::render::print_repair;
use crate::engine::Engine;
use crate::executor;

pub(crate) async fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    let RebuildArgs { config } = args;
    let (pipeline, _) = config.load()?;
    let engine = Engine::new(pipeline);
    let restored = engine.rebuild_state().await?;
    out!(
        "restored {restored} partition(s) into {} from the txn actions of {}",
        engine.pipeline().state,
        engine.pipeline().target
    );
    Ok(())
}

pub(crate) async fn release(args: ReleaseArgs) -> anyhow::Result<()> {
    let ReleaseArgs {
        target,
        force,
        format,
    } = args;
    let (engine, name) = repair(&target)?;
    let before = engine
        .state()
        .release_claim(&name, force, "released by hand (latefill state release)")
        .await
        .map_err(|e| live_claim_hint(e, "released"))?;
    let text = format!(
        "released {name} of pipeline {}: it was claimed by {} (run {}, lease until {}); \
         it is now failed and the next run takes it",
        engine.pipeline().name,
        before.owner,
        before.run_id,
        before
            .lease_expires_at
            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
    );
    print_repair(&engine, "released", &name, &before, format, &text);
    Ok(())
}

pub(crate) async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let ResetArgs {
        target,
        force,
        format,
    } = args;
    let (engine, name) = repair(&target)?;
    let removed = engine
        .state()
        .reset(&name, force)
        .await
        .map_err(|e| live_claim_hint(e, "reset"))?;
    let text = format!(
        "reset {name} of pipeline {}: forgot its row (status {}, source version {}); \
         the next run treats it as never processed",
        engine.pipeline().name,
        removed.status,
        removed
            .source_version
            .map_or_else(|| "-".to_owned(), |v| v.to_string())
    );
    print_repair(&engine, "reset", &name, &removed, format, &text);
    Ok(())
}

/// The engine and the partition for a repair by hand (`state release`, `state
/// reset`): `partition` as a period or a name.
fn repair(target: &RepairTarget) -> anyhow::Result<(Engine, PartitionKey)> {
    let (pipeline, _) = target.config.load()?;
    let name = pipeline
        .partitioning
        .key(pipeline.parse_date(&target.partition)?);
    executor::check_locations(&pipeline)?;
    Ok((Engine::new(pipeline), name))
}

/// A repair refused by a live claim says how to insist.
fn live_claim_hint(e: crate::state::Error, done: &str) -> anyhow::Error {
    match e {
        crate::state::Error::Claimed { .. } => {
            anyhow::Error::from(e).context(format!("not {done}; pass --force if that run is gone"))
        }
        e => e.into(),
    }
}
