//! `latefill init`: the default pipeline file as a starting point.

use anyhow::Context;

use crate::cli::args::InitArgs;
use crate::cli::exit::UsageError;
use crate::executor;

pub(crate) fn init(args: InitArgs) -> anyhow::Result<()> {
    let InitArgs {
        path,
        force,
        hourly,
    } = args;
    let path = path.as_path();
    if path.exists() && !force {
        return Err(UsageError(format!(
            "{} exists; pass --force to replace it",
            path.display()
        ))
        .into());
    }
    let granularity = if hourly {
        crate::Granularity::Hour
    } else {
        crate::Granularity::Day
    };
    std::fs::write(path, executor::example_pipeline_toml(granularity))
        .with_context(|| format!("writing {}", path.display()))?;
    out!(
        "wrote {}: edit it, then `latefill run --config {} --date {}`",
        path.display(),
        path.display(),
        granularity.pattern()
    );
    Ok(())
}
