//! The command line's arguments: what each command takes, and how a `--config` and
//! `--pipeline` become the pipelines to work on.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::PartitionDate;
use crate::cli::exit::UsageError;
use crate::datagen::cli::GenerateArgs;
use crate::engine::Engine;
use crate::executor::{Pipeline, Project, Session};

const LONG_ABOUT: &str = "\
latefill reprocesses the partitions of a Delta table whose data arrived late.

A pipeline (a TOML file, see `latefill init`) names a source Delta table partitioned by
day, a DataFusion SQL transform, a target Delta table and a state table. `latefill run
--date D` processes day D at a pinned source version and replaces exactly partition D of
the target; then it reads the source's Delta log from where it last stopped and
reprocesses every earlier partition whose data changed since it was processed. Any
number of latefill processes may work one pipeline at once: partitions are claimed in
the state table first.

Start with `latefill demo`: it builds a sample devices table under ./latefill-demo and
shows late data being found and reprocessed.

On object stores (s3://, az://, gs://), the Delta log files read are kept on disk for
the next run on this machine, which then reads only the commits written since:
LATEFILL_CACHE_DIR sets where (default: the user's cache directory, e.g.
~/.cache/latefill), LATEFILL_LOG_CACHE=memory keeps nothing on disk, =off nothing at
all.

Exit codes: 0 success, 1 storage failure or bug, 2 usage, 3 data, 4 contention
(claimed by another run), 130 interrupted.";

/// `latefill -V`: the version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LATEFILL_COMMIT"),
    " ",
    env!("LATEFILL_BUILD_DATE"),
    ")"
);

/// `latefill --version`: also the stores compiled in.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("LATEFILL_COMMIT"),
    "\nbuilt: ",
    env!("LATEFILL_BUILD_DATE"),
    "\nstores: local files (file://), S3 (s3://, s3a://), Azure (az://, abfs://, abfss://, azure://), GCS (gs://)"
);

#[derive(Debug, Parser)]
#[command(name = "latefill", version = VERSION, long_version = LONG_VERSION,
          about = "Late-data-aware Delta Lake backfills", long_about = LONG_ABOUT)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log more on stderr: -v what latefill does (commits read, claims, partitions
    /// and their timings), -vv why (races lost and retried). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Log only errors on stderr (warnings are logged by default).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// How logs are written on stderr: `text` for people, `json` (one object a line,
    /// with its fields) for log collectors.
    #[arg(long, global = true, value_enum, value_name = "FORMAT", env = "LATEFILL_LOG_FORMAT",
          default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Readable lines.
    Text,
    /// A JSON object a line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate a week of sample device data, run it, add late data and show it being
    /// found and reprocessed.
    ///
    /// Everything is written under --dir (default ./latefill-demo), which is replaced
    /// on the next demo run; a directory the demo did not make is never touched.
    Demo(DemoArgs),
    /// Write the default pipeline file as a starting point.
    Init(InitArgs),
    /// Append generated device rows for one day to a Delta table (one commit).
    Generate(GenerateArgs),
    /// Process one partition: read it at a pinned source version, transform it and
    /// replace it in the target.
    ///
    /// Re-running a date rewrites the partition from the source as it is now, so a run
    /// after late data arrived reflects the new rows, and a repeated run changes
    /// nothing but the target's version.
    ///
    /// The date is claimed in the state table first (exit 4 if another run holds it),
    /// and recorded as processed at its source version. Then the source's log is read
    /// from where the last detection stopped, and every partition before the date that
    /// changed since it was processed is reprocessed the same way (see --no-backfill
    /// and --backfill-config).
    Run(RunArgs),
    /// Detect and plan the late partitions before a date, without processing anything.
    ///
    /// Late: processed before the date, changed in the source since the version it was
    /// processed at, and not held by a running claim.
    Detect(DetectArgs),
    /// Show the state table: per partition its status, the source version it was
    /// processed at, the last version its data changed at, and whether it is late.
    Status(StatusArgs),
    /// Report how late each pipeline's data arrives, and the --lookback that covers it.
    ///
    /// A late change is a commit that changed a partition's source data after the
    /// partition was first processed. For each pipeline: the share of processed
    /// partitions that received late data; the distribution (p50, p90, p99, max) of
    /// lateness, the time from the end of the partition's period to the commit, and of
    /// the number of later runs that passed before it arrived; the slowest changes;
    /// and the --lookback that would have covered 99% and 100% of them. Read from the
    /// source's log (every commit it still holds) and the state table: commits removed
    /// by log cleanup are not seen.
    Lateness(LatenessArgs),
    /// Process a range of dates, N partitions at a time.
    ///
    /// By default it processes the dates with source data that are not up to date:
    /// never processed, failed, abandoned, or late. Each partition is claimed, processed
    /// at its own pinned source version and completed; a partition claimed by another
    /// run is skipped. Any number of backfills may run at once on the same pipeline.
    ///
    /// Ctrl-C or SIGTERM stops taking new partitions and lets the running ones finish;
    /// a second one abandons them and releases their claims. Either way it exits 130.
    Backfill(BackfillArgs),
    /// Manage the state table.
    #[command(subcommand)]
    State(StateCommand),
    /// Print, per partition of a Delta table, the last version whose commit changed its
    /// data, read from the table's log.
    ///
    /// Only add and remove actions with dataChange=true count: compaction does not,
    /// appends, deletes, updates and deletion-vector changes do. Where log cleanup
    /// removed commits the answer needs, it says so and answers conservatively.
    Changes(ChangesArgs),
    /// Print a shell completion script for latefill.
    ///
    /// bash: `latefill completions bash > /etc/bash_completion.d/latefill`;
    /// zsh: `latefill completions zsh > "${fpath[1]}/_latefill"`;
    /// fish: `latefill completions fish > ~/.config/fish/completions/latefill.fish`.
    Completions(CompletionsArgs),
    /// Print latefill's man page (roff), e.g. `latefill man > latefill.1; man ./latefill.1`.
    Man,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StateCommand {
    /// Rebuild the state table from the target's Delta application transactions
    /// (`txn`): each target partition is recorded as processed at the source version
    /// its last commit carried. Rows that are newer are kept.
    Rebuild(RebuildArgs),
    /// Give back the claim on a partition whose run is gone (killed, its machine
    /// lost), so that the next run takes it at once instead of after the lease.
    ///
    /// The partition becomes `failed` ("released by hand"). A claim whose lease is
    /// still live is refused (exit 4): its run may still be working. Pass --force
    /// when you know it is not. One commit to the state table.
    Release(ReleaseArgs),
    /// Forget a partition: its row is removed from the state table, so the next run
    /// or backfill treats it as never processed.
    ///
    /// The target is not touched. A partition whose claim is live is refused (exit 4)
    /// unless --force. One commit to the state table.
    Reset(ResetArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct LateArgs {
    /// Only consider late partitions at most DAYS days before the date.
    #[arg(long, value_name = "DAYS")]
    pub(crate) lookback: Option<u32>,
    /// How long this run's claims hold; a claim whose process died is taken over by
    /// another run after it expires. Longer than the slowest partition.
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) lease_seconds: u32,
    /// How late partitions are brought up to date: `auto` updates a partition from
    /// its late rows where that is safe (only appends since it was processed, a
    /// transform of counts, integer sums, minima and maxima, the target as latefill
    /// wrote it) and reads less, and replaces it otherwise; `replace` always
    /// recomputes it from all its rows; `incremental` updates wherever safe, even
    /// when that reads more. Default: the pipeline's `transform.strategy`, else
    /// `auto`.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub(crate) strategy: Option<StrategyArg>,
    /// The most memory the transform may hold at once, e.g. `512MB`, `2GB` (units
    /// of 1024): sorts and aggregations spill to the temporary directory (`TMPDIR`)
    /// beyond it, and a partition that cannot be processed within it fails (exit 3)
    /// saying so. Default: the pipeline's `transform.memory_limit`, else no bound.
    #[arg(long, value_name = "SIZE", env = "LATEFILL_MEMORY_LIMIT",
          value_parser = latefill_executor::parse_memory_limit)]
    pub(crate) memory_limit: Option<u64>,
}

impl LateArgs {
    /// The engine of `pipeline`, in `session` (one for all the pipelines of a
    /// command, so that what an upstream pipeline wrote its downstream advances).
    pub(crate) fn engine(&self, pipeline: Pipeline, session: &Session) -> Engine {
        Engine::new(with_overrides(pipeline, self.strategy, self.memory_limit))
            .with_lease(chrono::Duration::seconds(i64::from(self.lease_seconds)))
            .with_session(session.clone())
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArg {
    /// The pipeline file, a project file (a [[pipeline]] list), or a directory of
    /// pipeline files. Default: ./latefill.toml if it exists, otherwise the built-in
    /// devices pipeline with its tables under ./latefill-demo.
    #[arg(long, value_name = "FILE", env = "LATEFILL_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Of a project's pipelines, work on this one only. Without it, run, detect,
    /// backfill and status take every pipeline, upstream before downstream.
    #[arg(long, value_name = "NAME", env = "LATEFILL_PIPELINE")]
    pub(crate) pipeline: Option<String>,
}

impl ConfigArg {
    /// The pipelines to work on, in dependency order, and where they were declared.
    pub(crate) fn load_all(&self) -> anyhow::Result<(Vec<Pipeline>, String)> {
        let (project, origin) = match &self.config {
            Some(path) => (Project::from_path(path)?, path.display().to_string()),
            None if Path::new("latefill.toml").exists() => (
                Project::from_path("latefill.toml")?,
                "latefill.toml".to_owned(),
            ),
            None => (
                Project::new(vec![Pipeline::default_devices(Path::new("."))?])?,
                "built-in devices pipeline".to_owned(),
            ),
        };
        match &self.pipeline {
            None => Ok((project.pipelines().to_vec(), origin)),
            Some(name) => match project.get(name) {
                Some(p) => Ok((vec![p.clone()], origin)),
                None => Err(UsageError(format!(
                    "--pipeline {name:?}: {origin} declares no such pipeline; it declares {}",
                    project.names().join(", ")
                ))
                .into()),
            },
        }
    }

    /// The pipelines to work on ([`ConfigArg::load_all`]), refused when there are
    /// several and one of `flags` (a flag's name, when given) applies to one only.
    pub(crate) fn load_for(
        &self,
        flags: &[Option<&'static str>],
    ) -> anyhow::Result<(Vec<Pipeline>, String)> {
        let (pipelines, origin) = self.load_all()?;
        if pipelines.len() > 1
            && let Some(flag) = flags.iter().flatten().next()
        {
            return Err(UsageError(format!(
                "{flag} applies to one pipeline, and {origin} declares {}: choose one \
                 with --pipeline NAME",
                pipelines.len()
            ))
            .into());
        }
        Ok((pipelines, origin))
    }

    /// The one pipeline a command works on: the only one, or the one `--pipeline`
    /// names.
    pub(crate) fn load(&self) -> anyhow::Result<(Pipeline, String)> {
        let (mut pipelines, origin) = self.load_all()?;
        if pipelines.len() > 1 {
            return Err(UsageError(format!(
                "{origin} declares {} pipelines ({}); this works on one: choose it with \
                 --pipeline NAME",
                pipelines.len(),
                pipelines
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        Ok((pipelines.remove(0), origin))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFormat {
    /// Readable text.
    Text,
    /// JSON for machines.
    Json,
    /// A self-contained HTML page.
    Html,
}

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StrategyArg {
    /// From the late rows where safe and cheaper, else replace.
    Auto,
    /// Always recompute the whole partition.
    Replace,
    /// From the late rows wherever safe, even when that reads more.
    Incremental,
}

/// `pipeline` with the strategy `--strategy` and the limit `--memory-limit` asked
/// for, if any.
pub(crate) fn with_overrides(
    mut pipeline: Pipeline,
    strategy: Option<StrategyArg>,
    memory_limit: Option<u64>,
) -> Pipeline {
    if memory_limit.is_some() {
        pipeline.memory_limit = memory_limit;
    }
    match strategy {
        Some(StrategyArg::Auto) => pipeline.strategy = latefill_executor::Strategy::Auto,
        Some(StrategyArg::Replace) => pipeline.strategy = latefill_executor::Strategy::Replace,
        Some(StrategyArg::Incremental) => {
            pipeline.strategy = latefill_executor::Strategy::Incremental
        }
        None => {}
    }
    pipeline
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Readable text.
    Text,
    /// JSON for machines.
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Where the demo's tables go.
    #[arg(long, default_value = "latefill-demo", value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Output format: `json` prints each step as a JSON line on stdout.
    #[arg(long = "format", visible_alias = "output", value_enum, value_name = "FORMAT",
          env = "LATEFILL_FORMAT", default_value_t = Output::Text)]
    pub(crate) output: Output,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The file to write.
    #[arg(long, default_value = "latefill.toml", value_name = "FILE")]
    pub(crate) path: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Write an hourly pipeline instead: partitions `YYYY-MM-DDTHH`, over
    /// `latefill-demo/devices_hourly` (fill it with `latefill generate --date
    /// 2024-01-03T05`).
    #[arg(long)]
    pub(crate) hourly: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// The partition to process: YYYY-MM-DD, or YYYY-MM-DDTHH / YYYY-MM for a
    /// pipeline of hours / months (`source.granularity`).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) date: String,
    /// Read the source at this version instead of the latest.
    #[arg(long, value_name = "V")]
    pub(crate) source_version: Option<u64>,
    /// When the source has no rows for the date, write an empty partition instead
    /// of failing.
    #[arg(long)]
    pub(crate) allow_empty: bool,
    #[command(flatten)]
    pub(crate) late: LateArgs,
    /// Only process the date; report the late partitions without reprocessing them.
    #[arg(long, conflicts_with = "backfill_config")]
    pub(crate) no_backfill: bool,
    /// Claim the late partitions and write them to PATH as
    /// {"partitions": [...], "run_id": "..."} for an external scheduler, instead of
    /// reprocessing them here.
    #[arg(long, value_name = "PATH")]
    pub(crate) backfill_config: Option<PathBuf>,
    /// Run as this run id, e.g. the one in a backfill config, to take over its claims.
    #[arg(long, value_name = "ID")]
    pub(crate) run_id: Option<String>,
    /// Output format: `json` prints one JSON object on stdout.
    #[arg(long = "format", visible_alias = "output", value_enum, value_name = "FORMAT",
          env = "LATEFILL_FORMAT", default_value_t = Output::Text)]
    pub(crate) output: Output,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DetectArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// The run date: partitions before it are considered.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) date: String,
    #[command(flatten)]
    pub(crate) late: LateArgs,
    /// Claim the late partitions and write them to PATH for an external scheduler.
    #[arg(long, value_name = "PATH")]
    pub(crate) backfill_config: Option<PathBuf>,
    /// Output format: `json` prints one JSON object on stdout.
    #[arg(long = "format", visible_alias = "output", value_enum, value_name = "FORMAT",
          env = "LATEFILL_FORMAT", default_value_t = Output::Text)]
    pub(crate) output: Output,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// Output format: `json` prints one JSON array on stdout; `html` a page of
    /// every partition as a coloured cell (processed, late, failed, processing,
    /// never run), one self-contained file with no network access.
    #[arg(long, visible_alias = "output", value_enum, env = "LATEFILL_FORMAT",
          default_value_t = StatusFormat::Text)]
    pub(crate) format: StatusFormat,
    /// Write the output to this file instead of stdout (e.g. `--format html --out
    /// status.html`).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Only partitions from this date on (YYYY-MM-DD, or the pipeline's
    /// granularity).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) from: Option<String>,
    /// Only partitions up to this date, included.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) to: Option<String>,
    /// Only partitions in one of these states, comma-separated (e.g.
    /// `--state failed,late`). A partition can be in several: processed and late,
    /// or processed and stale.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STATE,...")]
    pub(crate) state: Vec<StateFilter>,
}

/// `status --state`: what a partition is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateFilter {
    /// Processed (late, stale or up to date).
    Processed,
    /// Its last run failed.
    Failed,
    /// Processed, and its source data changed since.
    Late,
    /// Processed by another version of the transform.
    Stale,
    /// Claimed by a worker now.
    Processing,
    /// Seen in the source, never processed.
    Unprocessed,
}

impl StateFilter {
    /// Whether `row` is in this state.
    pub(crate) fn matches(self, row: &crate::engine::StatusRow) -> bool {
        match self {
            StateFilter::Processed => row.status == "processed",
            StateFilter::Failed => row.status == "failed",
            StateFilter::Late => row.late,
            StateFilter::Stale => row.stale,
            StateFilter::Processing => row.status == "processing",
            StateFilter::Unprocessed => row.status == "unprocessed",
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct LatenessArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// Only partitions from this date on (YYYY-MM-DD, or the pipeline's
    /// granularity).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) from: Option<String>,
    /// Only partitions up to this date, included.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) to: Option<String>,
    /// Output format: `json` prints one JSON object per pipeline, a line each.
    #[arg(long, visible_alias = "output", value_enum, env = "LATEFILL_FORMAT",
          default_value_t = Output::Text)]
    pub(crate) format: Output,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BackfillArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// The first date (YYYY-MM-DD, or the pipeline's granularity).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) from: String,
    /// The last date, included.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) to: String,
    /// Partitions processed at once. Where requests wait (an object store), more
    /// than the cores pay: the runs that finish together also share one target commit.
    /// Workers of a fleet on one state table: 8 to 16 (docs/scale.md).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) concurrency: u16,
    /// Only dates that are late: processed, and changed in the source since.
    #[arg(long)]
    pub(crate) only_late: bool,
    /// Every date with source data, even those up to date.
    #[arg(long, conflicts_with = "only_late")]
    pub(crate) all: bool,
    /// Only stale dates: processed by another version of the transform, i.e.
    /// before the SQL was last changed. Editing the SQL never reprocesses history
    /// by itself: `status` and `detect` report such dates, and this brings the
    /// range you choose up to date.
    #[arg(long, conflicts_with_all = ["only_late", "all"])]
    pub(crate) stale: bool,
    /// How long claims hold; see `latefill run --help`.
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) lease_seconds: u32,
    /// Partitions claimed per state commit, and processed partitions recorded per
    /// commit (or after 2 seconds, whichever comes first). 1 makes a commit per
    /// transition. A crash between a partition's target commit and its record
    /// loses nothing: the next run recognises the commit by its txn.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) batch_size: u16,
    /// Print the partitions the backfill would process, why, and how each would be
    /// brought up to date (strategy, rows and bytes read), then stop: nothing is
    /// claimed, processed or written, not even the detector's cursor.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// How late partitions are brought up to date: `auto` updates a partition from
    /// its late rows where that is safe (only appends since it was processed, a
    /// transform of counts, integer sums, minima and maxima, the target as latefill
    /// wrote it) and reads less, and replaces it otherwise; `replace` always
    /// recomputes it from all its rows; `incremental` updates wherever safe, even
    /// when that reads more. Default: the pipeline's `transform.strategy`, else
    /// `auto`.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub(crate) strategy: Option<StrategyArg>,
    /// The most memory the transform may hold at once, e.g. `512MB`, `2GB` (units
    /// of 1024): sorts and aggregations spill to the temporary directory (`TMPDIR`)
    /// beyond it, and a partition that cannot be processed within it fails (exit 3)
    /// saying so. Default: the pipeline's `transform.memory_limit`, else no bound.
    #[arg(long, value_name = "SIZE", env = "LATEFILL_MEMORY_LIMIT",
          value_parser = latefill_executor::parse_memory_limit)]
    pub(crate) memory_limit: Option<u64>,
    /// Output format: `json` prints JSON lines (one per event, then a summary) and
    /// no progress bar.
    #[arg(long = "format", visible_alias = "output", value_enum, value_name = "FORMAT",
          env = "LATEFILL_FORMAT", default_value_t = Output::Text)]
    pub(crate) output: Output,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ChangesArgs {
    /// The Delta table, a path or URL.
    #[arg(long, value_name = "PATH")]
    pub(crate) table: String,
    /// Only report changes in commits after this version.
    #[arg(long, value_name = "N")]
    pub(crate) since_version: Option<u64>,
    /// Output format: `json` prints one JSON object on stdout.
    #[arg(long, visible_alias = "output", value_enum, env = "LATEFILL_FORMAT",
          default_value_t = Output::Text)]
    pub(crate) format: Output,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RebuildArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
}

/// The partition a repair by hand (`state release`, `state reset`) works on.
#[derive(Debug, clap::Args)]
pub(crate) struct RepairTarget {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// The partition: its period (2024-01-03) or its name (event_time=2024-01-03).
    #[arg(value_name = "PARTITION")]
    pub(crate) partition: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReleaseArgs {
    #[command(flatten)]
    pub(crate) target: RepairTarget,
    /// Release it even though its lease is live.
    #[arg(long)]
    pub(crate) force: bool,
    /// Output format: `json` prints the row as it was on stdout.
    #[arg(long, visible_alias = "output", value_enum, env = "LATEFILL_FORMAT",
          default_value_t = Output::Text)]
    pub(crate) format: Output,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ResetArgs {
    #[command(flatten)]
    pub(crate) target: RepairTarget,
    /// Forget it even though a run holds a live claim on it.
    #[arg(long)]
    pub(crate) force: bool,
    /// Output format: `json` prints the row removed on stdout.
    #[arg(long, visible_alias = "output", value_enum, env = "LATEFILL_FORMAT",
          default_value_t = Output::Text)]
    pub(crate) format: Output,
}

/// `--from` and `--to` as `pipeline`'s periods (either may be absent); a range that
/// ends before it starts is a usage error.
pub(crate) fn date_range(
    pipeline: &Pipeline,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<(Option<PartitionDate>, Option<PartitionDate>)> {
    let from = from.map(|d| pipeline.parse_date(d)).transpose()?;
    let to = to.map(|d| pipeline.parse_date(d)).transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(UsageError(format!(
            "--from {from} is after --to {to}: the range would be empty"
        ))
        .into());
    }
    Ok((from, to))
}
