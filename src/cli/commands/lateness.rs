//! `latefill lateness`: how late each pipeline's data arrives.

use crate::cli::args::{LatenessArgs, Output, date_range};
use crate::cli::progress::{span, thousands};
use crate::engine::{Distribution, Engine, LatenessReport};
use crate::executor::Session;

pub(crate) async fn lateness(args: LatenessArgs) -> anyhow::Result<()> {
    let LatenessArgs {
        config,
        from,
        to,
        format,
    } = args;
    let (pipelines, _) = config.load_all()?;
    let session = Session::new();
    for pipeline in pipelines {
        let (from, to) = date_range(&pipeline, from.as_deref(), to.as_deref())?;
        let report = Engine::new(pipeline)
            .with_session(session.clone())
            .lateness(from, to)
            .await?;
        match format {
            Output::Json => out!("{}", serde_json::to_string(&report)?),
            Output::Text => out!("{}", text(&report).trim_end()),
        }
    }
    Ok(())
}

fn distribution(d: &Distribution, unit: impl Fn(u64) -> String) -> String {
    format!(
        "p50 {}, p90 {}, p99 {}, max {}",
        unit(d.p50),
        unit(d.p90),
        unit(d.p99),
        unit(d.max)
    )
}

fn text(r: &LatenessReport) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let range = match (&r.from, &r.to) {
        (None, None) => String::new(),
        (from, to) => format!(
            " of {}..{}",
            from.as_deref().unwrap_or(""),
            to.as_deref().unwrap_or("")
        ),
    };
    let _ = writeln!(
        t,
        "pipeline {}: {} of {} processed partitions{range} received late data ({:.1}%), in {} late change{}",
        r.pipeline,
        thousands(r.late_partitions as u64),
        thousands(r.partitions as u64),
        r.late_share * 100.0,
        thousands(r.late_changes as u64),
        if r.late_changes == 1 { "" } else { "s" },
    );
    if let Some(d) = &r.lateness_seconds {
        let _ = writeln!(
            t,
            "  lateness (end of the period to the commit): {}",
            distribution(d, span)
        );
    }
    if let Some(d) = &r.runs_later {
        let _ = writeln!(
            t,
            "  runs later (periods until it arrived):     {}",
            distribution(d, |n| n.to_string())
        );
    }
    if let (Some(p99), Some(all)) = (r.lookback_days_99, r.lookback_days_100) {
        let _ = writeln!(
            t,
            "  --lookback {p99} would have covered 99% of the late changes seen, --lookback {all} all of them"
        );
    }
    if !r.slowest.is_empty() {
        let _ = writeln!(t, "  slowest:");
        for c in &r.slowest {
            let _ = writeln!(
                t,
                "    {}  version {} committed {}, {} after its period ended ({} run{} later)",
                c.partition,
                c.version,
                c.committed_at.format("%Y-%m-%d %H:%M"),
                span(c.lateness_seconds),
                c.runs_later,
                if c.runs_later == 1 { "" } else { "s" },
            );
        }
    }
    let c = &r.coverage;
    let _ = writeln!(
        t,
        "  read: the source's log at version {}, {} data commits{}",
        c.source_version,
        thousands(c.commits as u64),
        if c.read_from.get() > 0 {
            format!(
                " from version {} on (older commits were cleaned up: their changes are not seen)",
                c.read_from
            )
        } else {
            " (its whole history)".to_owned()
        }
    );
    if c.first_processing_assumed > 0 {
        let _ = writeln!(
            t,
            "  {} partition{} processed before latefill recorded first processings: its first commit stands for it",
            thousands(c.first_processing_assumed as u64),
            if c.first_processing_assumed == 1 {
                ""
            } else {
                "s"
            },
        );
    }
    if c.recorded_changes > 0 {
        let _ = writeln!(
            t,
            "  {} late change{} from the state table's record: their commits were cleaned up",
            thousands(c.recorded_changes as u64),
            if c.recorded_changes == 1 { "" } else { "s" },
        );
    }
    if c.changes_without_time > 0 {
        let _ = writeln!(
            t,
            "  {} late change{} without a commit time: counted, not measured",
            c.changes_without_time,
            if c.changes_without_time == 1 { "" } else { "s" },
        );
    }
    t
}
