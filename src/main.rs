//! The `latefill` command line: a thin layer over the library crates.
//!
//! Flags are parsed by clap, turned into validated values (dates, pipeline) before any
//! storage is touched, handed to the library, and the outcome printed as text or JSON.
//! Errors map to the exit codes documented in [`exit`] and in the README.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use latefill::datagen::cli::GenerateArgs;
use std::future::IntoFuture;
use std::io::IsTerminal;

use latefill::backfill::{BackfillEvent, Batching, Selection};
use latefill::engine::{Engine, LateHandling, RunControl, RunDateOptions, RunOutcome};
use latefill::executor::{self, Pipeline, Project, RunReport};
use latefill::storage::StoreFailure;
use latefill::{ErrorClass, PartitionDate};

/// `println!` that ignores a closed stdout (see [`emit_line`]).
macro_rules! out {
    () => { emit_line("") };
    ($($arg:tt)*) => { emit_line(&format!($($arg)*)) };
}

/// Exit codes: stable, documented in the README.
mod exit {
    /// Everything asked for was done.
    pub const SUCCESS: u8 = 0;
    /// Storage failed, or a bug: retrying may help; report it if it persists.
    pub const FAILURE: u8 = 1;
    /// Bad arguments or pipeline file: fix the command or the file.
    pub const USAGE: u8 = 2;
    /// The data cannot be processed as declared (missing table or partition, bad SQL,
    /// schema mismatch).
    pub const DATA: u8 = 3;
    /// Contention: a partition is being processed by another run (claimed elsewhere).
    pub const CONTENTION: u8 = 4;
    /// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

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

Exit codes: 0 success, 1 storage failure or bug, 2 usage, 3 data, 4 contention
(claimed by another run), 130 interrupted.";

#[derive(Debug, Parser)]
#[command(name = "latefill", version, about = "Late-data-aware Delta Lake backfills", long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more on stderr: -v what latefill does (commits read, claims, partitions
    /// and their timings), -vv why (races lost and retried). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log only errors on stderr (warnings are logged by default).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

/// Logs go to stderr, so stdout stays the command's output (JSON included). The
/// level comes from RUST_LOG when set, else from -v/-q.
fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let ours = [
        "latefill",
        "latefill_state",
        "latefill_detector",
        "latefill_executor",
    ];
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // Dependencies log their own probes as errors (a target that does not exist yet):
    // silent unless RUST_LOG asks for them.
    let default = std::iter::once("off".to_owned())
        .chain(ours.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a week of sample device data, run it, add late data and show it being
    /// found and reprocessed.
    ///
    /// Everything is written under --dir (default ./latefill-demo), which is replaced
    /// on the next demo run; a directory the demo did not make is never touched.
    Demo {
        /// Where the demo's tables go.
        #[arg(long, default_value = "latefill-demo", value_name = "DIR")]
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Write the default pipeline file as a starting point.
    Init {
        /// The file to write.
        #[arg(long, default_value = "latefill.toml", value_name = "FILE")]
        path: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
        /// Write an hourly pipeline instead: partitions `YYYY-MM-DDTHH`, over
        /// `latefill-demo/devices_hourly` (fill it with `latefill generate --date
        /// 2024-01-03T05`).
        #[arg(long)]
        hourly: bool,
    },
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
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// The partition to process: YYYY-MM-DD, or YYYY-MM-DDTHH / YYYY-MM for a
        /// pipeline of hours / months (`source.granularity`).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: String,
        /// Read the source at this version instead of the latest.
        #[arg(long, value_name = "V")]
        source_version: Option<u64>,
        /// When the source has no rows for the date, write an empty partition instead
        /// of failing.
        #[arg(long)]
        allow_empty: bool,
        #[command(flatten)]
        late: LateArgs,
        /// Only process the date; report the late partitions without reprocessing them.
        #[arg(long, conflicts_with = "backfill_config")]
        no_backfill: bool,
        /// Claim the late partitions and write them to PATH as
        /// {"partitions": [...], "run_id": "..."} for an external scheduler, instead of
        /// reprocessing them here.
        #[arg(long, value_name = "PATH")]
        backfill_config: Option<PathBuf>,
        /// Run as this run id, e.g. the one in a backfill config, to take over its claims.
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Output format: `json` prints one JSON object on stdout.
        #[arg(long, visible_alias = "format", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Detect and plan the late partitions before a date, without processing anything.
    ///
    /// Late: processed before the date, changed in the source since the version it was
    /// processed at, and not held by a running claim.
    Detect {
        #[command(flatten)]
        config: ConfigArg,
        /// The run date: partitions before it are considered.
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: String,
        #[command(flatten)]
        late: LateArgs,
        /// Claim the late partitions and write them to PATH for an external scheduler.
        #[arg(long, value_name = "PATH")]
        backfill_config: Option<PathBuf>,
        /// Output format: `json` prints one JSON object on stdout.
        #[arg(long, visible_alias = "format", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show the state table: per partition its status, the source version it was
    /// processed at, the last version its data changed at, and whether it is late.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format: `json` prints one JSON array on stdout; `html` a page of
        /// every partition as a coloured cell (processed, late, failed, processing,
        /// never run), one self-contained file with no network access.
        #[arg(long, visible_alias = "output", value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
        /// Write the output to this file instead of stdout (e.g. `--format html --out
        /// status.html`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Process a range of dates, N partitions at a time.
    ///
    /// By default it processes the dates with source data that are not up to date:
    /// never processed, failed, abandoned, or late. Each partition is claimed, processed
    /// at its own pinned source version and completed; a partition claimed by another
    /// run is skipped. Any number of backfills may run at once on the same pipeline.
    ///
    /// Ctrl-C or SIGTERM stops taking new partitions and lets the running ones finish;
    /// a second one abandons them and releases their claims. Either way it exits 130.
    Backfill {
        #[command(flatten)]
        config: ConfigArg,
        /// The first date (YYYY-MM-DD, or the pipeline's granularity).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: String,
        /// The last date, included.
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: String,
        /// Partitions processed at once.
        #[arg(long, default_value_t = 1, value_name = "N",
              value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// Only dates that are late: processed, and changed in the source since.
        #[arg(long)]
        only_late: bool,
        /// Every date with source data, even those up to date.
        #[arg(long, conflicts_with = "only_late")]
        all: bool,
        /// Only stale dates: processed by another version of the transform, i.e.
        /// before the SQL was last changed. Editing the SQL never reprocesses history
        /// by itself: `status` and `detect` report such dates, and this brings the
        /// range you choose up to date.
        #[arg(long, conflicts_with_all = ["only_late", "all"])]
        stale: bool,
        /// How long claims hold; see `latefill run --help`.
        #[arg(long, value_name = "SECONDS", default_value_t = 600,
              value_parser = clap::value_parser!(u32).range(1..))]
        lease_seconds: u32,
        /// Partitions claimed per state commit, and processed partitions recorded per
        /// commit (or after 2 seconds, whichever comes first). 1 makes a commit per
        /// transition. A crash between a partition's target commit and its record
        /// loses nothing: the next run recognises the commit by its txn.
        #[arg(long, value_name = "N", default_value_t = 8,
              value_parser = clap::value_parser!(u16).range(1..=1024))]
        batch_size: u16,
        /// Output format: `json` prints JSON lines (one per event, then a summary) and
        /// no progress bar.
        #[arg(long, visible_alias = "format", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Manage the state table.
    #[command(subcommand)]
    State(StateCommand),
    /// Print, per partition of a Delta table, the last version whose commit changed its
    /// data, read from the table's log.
    ///
    /// Only add and remove actions with dataChange=true count: compaction does not,
    /// appends, deletes, updates and deletion-vector changes do. Where log cleanup
    /// removed commits the answer needs, it says so and answers conservatively.
    Changes {
        /// The Delta table, a path or URL.
        #[arg(long, value_name = "PATH")]
        table: String,
        /// Only report changes in commits after this version.
        #[arg(long, value_name = "N")]
        since_version: Option<u64>,
        /// Output format: `json` prints one JSON object on stdout.
        #[arg(long, visible_alias = "output", value_enum, default_value_t = Output::Text)]
        format: Output,
    },
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Rebuild the state table from the target's Delta application transactions
    /// (`txn`): each target partition is recorded as processed at the source version
    /// its last commit carried. Rows that are newer are kept.
    Rebuild {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Give back the claim on a partition whose run is gone (killed, its machine
    /// lost), so that the next run takes it at once instead of after the lease.
    ///
    /// The partition becomes `failed` ("released by hand"). A claim whose lease is
    /// still live is refused (exit 4): its run may still be working. Pass --force
    /// when you know it is not. One commit to the state table.
    Release {
        #[command(flatten)]
        config: ConfigArg,
        /// The partition: its period (2024-01-03) or its name (event_time=2024-01-03).
        #[arg(value_name = "PARTITION")]
        partition: String,
        /// Release it even though its lease is live.
        #[arg(long)]
        force: bool,
        /// Output format: `json` prints the row as it was on stdout.
        #[arg(long, visible_alias = "output", value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Forget a partition: its row is removed from the state table, so the next run
    /// or backfill treats it as never processed.
    ///
    /// The target is not touched. A partition whose claim is live is refused (exit 4)
    /// unless --force. One commit to the state table.
    Reset {
        #[command(flatten)]
        config: ConfigArg,
        /// The partition: its period (2024-01-03) or its name (event_time=2024-01-03).
        #[arg(value_name = "PARTITION")]
        partition: String,
        /// Forget it even though a run holds a live claim on it.
        #[arg(long)]
        force: bool,
        /// Output format: `json` prints the row removed on stdout.
        #[arg(long, visible_alias = "output", value_enum, default_value_t = Output::Text)]
        format: Output,
    },
}

#[derive(Debug, clap::Args)]
struct LateArgs {
    /// Only consider late partitions at most DAYS days before the date.
    #[arg(long, value_name = "DAYS")]
    lookback: Option<u32>,
    /// How long this run's claims hold; a claim whose process died is taken over by
    /// another run after it expires. Longer than the slowest partition.
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..))]
    lease_seconds: u32,
}

impl LateArgs {
    fn engine(&self, pipeline: Pipeline) -> Engine {
        Engine::new(pipeline).with_lease(chrono::Duration::seconds(i64::from(self.lease_seconds)))
    }
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The pipeline file, a project file (a [[pipeline]] list), or a directory of
    /// pipeline files. Default: ./latefill.toml if it exists, otherwise the built-in
    /// devices pipeline with its tables under ./latefill-demo.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Of a project's pipelines, work on this one only. Without it, run, detect,
    /// backfill and status take every pipeline, upstream before downstream.
    #[arg(long, value_name = "NAME")]
    pipeline: Option<String>,
}

impl ConfigArg {
    /// The pipelines to work on, in dependency order, and where they were declared.
    fn load_all(&self) -> anyhow::Result<(Vec<Pipeline>, String)> {
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

    /// The one pipeline a command works on: the only one, or the one `--pipeline`
    /// names.
    fn load(&self) -> anyhow::Result<(Pipeline, String)> {
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

/// Whether `pipeline` reads one of `targets`.
fn reads_from(pipeline: &Pipeline, targets: &[url::Url]) -> bool {
    targets
        .iter()
        .any(|t| executor::same_table(t, &pipeline.source))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatusFormat {
    /// Readable text.
    Text,
    /// JSON for machines.
    Json,
    /// A self-contained HTML page.
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Readable text.
    Text,
    /// JSON for machines.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let output = match &cli.command {
        Command::Demo { output, .. }
        | Command::Run { output, .. }
        | Command::Detect { output, .. }
        | Command::Backfill { output, .. }
        | Command::Changes { format: output, .. }
        | Command::State(
            StateCommand::Release { format: output, .. }
            | StateCommand::Reset { format: output, .. },
        ) => *output,
        Command::Status {
            format: StatusFormat::Json,
            ..
        } => Output::Json,
        _ => Output::Text,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(err) => {
            let code = exit_code(&err);
            let message = error_message(&err);
            eprintln!("error: {message}");
            if output == Output::Json {
                let kind = match code {
                    exit::USAGE => "usage",
                    exit::DATA => "data",
                    exit::CONTENTION => "contention",
                    exit::INTERRUPTED => "interrupted",
                    _ => "failure",
                };
                let json = serde_json::json!({
                    "error": { "kind": kind, "exit_code": code, "message": message }
                });
                out!("{json}");
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes joined with ": ", leaving out a cause whose text the
/// message already holds (errors that name their source in their own text).
fn error_message(err: &anyhow::Error) -> String {
    let backtraces = std::env::var("RUST_BACKTRACE").is_ok_and(|v| v != "0");
    let texts: Vec<String> = err
        .chain()
        .map(|cause| match backtraces {
            true => cause.to_string(),
            false => without_backtrace(&cause.to_string()),
        })
        .collect();
    if let Some(failure) = StoreFailure::of(err.as_ref()) {
        return store_failure_message(err, &texts, &failure);
    }
    let mut message = String::new();
    for text in texts {
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// A store failure in one paragraph: what latefill was doing to which table (the
/// words of latefill's own errors in the chain, less their sources'), what the store
/// said, and what to do; not the store's whole XML answer.
fn store_failure_message(err: &anyhow::Error, texts: &[String], failure: &StoreFailure) -> String {
    let ours = |cause: &(dyn std::error::Error + 'static)| {
        cause.is::<latefill::engine::Error>()
            || cause.is::<executor::Error>()
            || cause.is::<latefill::state::Error>()
            || cause.is::<latefill::detector::Error>()
            || cause.is::<latefill::datagen::Error>()
    };
    let mut context: Vec<&str> = Vec::new();
    for (i, cause) in err.chain().enumerate() {
        if i > 0 && !ours(cause) {
            break;
        }
        let text = texts[i].as_str();
        let own = texts
            .get(i + 1)
            .and_then(|next| text.strip_suffix(next.as_str()))
            .map_or(text, |own| own.trim_end_matches([':', ' ']));
        if !own.is_empty() && !context.iter().any(|c| c.contains(own)) {
            context.push(own);
        }
    }
    format!("{}: {failure}\n  {}", context.join(": "), failure.hint())
}

/// `text` up to the first line that is a frame of a backtrace (`  12: name`): the
/// Delta kernel writes its backtrace into its errors' messages.
fn without_backtrace(text: &str) -> String {
    let is_frame = |line: &str| {
        let line = line.trim_start();
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && line[digits..].starts_with(": ")
    };
    text.lines()
        .take_while(|line| !is_frame(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

/// Maps an error to its exit code by the class of the library error inside it: the
/// one place where classes become exit codes.
fn exit_code(err: &anyhow::Error) -> u8 {
    // A bucket, credentials or endpoint that do not work are configuration to fix.
    if StoreFailure::of(err.as_ref()).is_some() {
        return exit::USAGE;
    }
    for cause in err.chain() {
        let class = if let Some(e) = cause.downcast_ref::<latefill::engine::Error>() {
            e.class()
        } else if let Some(e) = cause.downcast_ref::<executor::Error>() {
            e.class()
        } else if let Some(e) = cause.downcast_ref::<latefill::state::Error>() {
            e.class()
        } else if let Some(e) = cause.downcast_ref::<latefill::detector::Error>() {
            e.class()
        } else if let Some(e) = cause.downcast_ref::<latefill::demo::DemoError>() {
            e.class()
        } else if let Some(e) = cause.downcast_ref::<latefill::datagen::Error>() {
            match e {
                latefill::datagen::Error::Delta { .. } => ErrorClass::Storage,
                _ => ErrorClass::Usage,
            }
        } else if cause.downcast_ref::<UsageError>().is_some() {
            ErrorClass::Usage
        } else if cause.downcast_ref::<DataFailure>().is_some() {
            ErrorClass::Data
        } else if cause.downcast_ref::<Interrupted>().is_some() {
            return exit::INTERRUPTED;
        } else {
            continue;
        };
        return match class {
            ErrorClass::Usage => exit::USAGE,
            ErrorClass::Data => exit::DATA,
            ErrorClass::Contention => exit::CONTENTION,
            _ => exit::FAILURE,
        };
    }
    exit::FAILURE
}

/// A usage problem found by the binary itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// The run was stopped by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: {0}")]
struct Interrupted(String);

/// Work that failed on the data, reported after the rest was done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DataFailure(String);

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo { dir, output } => demo(&dir, output).await,
        Command::Init {
            path,
            force,
            hourly,
        } => init(&path, force, hourly),
        Command::Generate(args) => {
            let report = args.to_options()?.write().await?;
            out!(
                "appended {} rows to {} of {} (version {})",
                report.rows,
                report.partition,
                report.table,
                report.table_version
            );
            Ok(())
        }
        Command::Run {
            config,
            date,
            source_version,
            allow_empty,
            late,
            no_backfill,
            backfill_config,
            run_id,
            output,
        } => {
            // Validate every argument before any storage is touched.
            let (pipelines, origin) = config.load_all()?;
            if pipelines.len() > 1
                && let Some(flag) = [
                    source_version.map(|_| "--source-version"),
                    backfill_config.as_ref().map(|_| "--backfill-config"),
                    run_id.as_ref().map(|_| "--run-id"),
                ]
                .into_iter()
                .flatten()
                .next()
            {
                return Err(UsageError(format!(
                    "{flag} applies to one pipeline, and {origin} declares {}: choose one \
                     with --pipeline NAME",
                    pipelines.len()
                ))
                .into());
            }
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
            let mut failed_targets = Vec::new();
            let mut late_failures = 0;
            let mut interrupted = false;
            for (pipeline, date) in pipelines.into_iter().zip(dates) {
                let name = pipeline.name.clone();
                if interrupted {
                    break;
                }
                if reads_from(&pipeline, &failed_targets) {
                    let reason = "not run: a pipeline it reads from failed";
                    match output {
                        Output::Json => out!(
                            "{}",
                            serde_json::json!({"pipeline": name, "skipped": reason})
                        ),
                        Output::Text => out!("pipeline {name}: {reason}"),
                    }
                    failed_targets.push(pipeline.target.clone());
                    continue;
                }
                let mut engine = late.engine(pipeline);
                if let Some(id) = &run_id {
                    engine = engine.with_run_id(id.clone());
                }
                let control = std::sync::Arc::new(RunControl::default());
                let options = RunDateOptions {
                    source_version,
                    allow_empty,
                    backfill: backfill.clone(),
                    lookback_days: late.lookback,
                    control: Some(control.clone()),
                };
                let result =
                    until_signalled(&engine, &control, engine.run_date(date, options)).await?;
                if control.is_stopped() {
                    interrupted = true;
                }
                match result {
                    Ok(mut outcome) => {
                        // Stopped after handing out: the scheduler will not read the plan.
                        if let (true, Some(path)) = (interrupted, &outcome.backfill_config)
                            && let Some(plan) = engine.take_back(path).await?
                        {
                            outcome.backfill_config = None;
                            outcome
                                .skipped
                                .extend(plan.partitions.into_iter().map(|partition| {
                                    latefill::engine::Skipped {
                                        partition,
                                        reason: "not handed out: the run was interrupted".into(),
                                    }
                                }));
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
                        failed_targets.push(engine.pipeline().target.clone());
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
        Command::Detect {
            config,
            date,
            late,
            backfill_config,
            output,
        } => {
            let (pipelines, origin) = config.load_all()?;
            if pipelines.len() > 1 && backfill_config.is_some() {
                return Err(UsageError(format!(
                    "--backfill-config applies to one pipeline, and {origin} declares {}: \
                     choose one with --pipeline NAME",
                    pipelines.len()
                ))
                .into());
            }
            let several = pipelines.len() > 1;
            let dates = pipelines
                .iter()
                .map(|p| p.parse_date(&date))
                .collect::<executor::Result<Vec<_>>>()?;
            for (pipeline, date) in pipelines.into_iter().zip(dates) {
                let name = pipeline.name.clone();
                let engine = late.engine(pipeline);
                let control = RunControl::default();
                let work = async {
                    let detection = engine.detect(date, late.lookback).await?;
                    let plan = match &backfill_config {
                        Some(path) => engine.hand_out(&detection.late, path, &control).await?,
                        None => None,
                    };
                    anyhow::Ok((detection, plan))
                };
                let (detection, plan) = match backfill_config {
                    // Handing out claims: a scheduler's signal gives them back.
                    Some(_) => until_signalled(&engine, &control, work).await??,
                    None => work.await?,
                };
                if control.is_stopped() {
                    let taken = match &backfill_config {
                        Some(path) => engine.take_back(path).await?,
                        None => None,
                    };
                    tracing::debug!(taken_back = ?taken, "interrupted after the hand-out");
                    return Err(Interrupted(
                        "nothing handed out: no plan file written, and any claims made given back"
                            .into(),
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
                                detection.stale.join(", ")
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
        Command::Status {
            config,
            format,
            out,
        } => {
            let (pipelines, _) = config.load_all()?;
            let several = pipelines.len() > 1;
            let mut all = Vec::new();
            for pipeline in pipelines {
                let rows = Engine::new(pipeline.clone()).status().await?;
                all.push((pipeline, rows));
            }
            let text = match format {
                StatusFormat::Json => {
                    let rows: Vec<_> = all.iter().flat_map(|(_, rows)| rows).collect();
                    serde_json::to_string_pretty(&rows)? + "\n"
                }
                StatusFormat::Html => latefill::status_page::render(&all, chrono::Utc::now()),
                StatusFormat::Text => {
                    let mut text = String::new();
                    for (pipeline, rows) in &all {
                        if several {
                            text += &format!("pipeline {}\n", pipeline.name);
                        }
                        text += &status_text(rows);
                    }
                    text
                }
            };
            match out {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))?,
                None => emit_line(text.trim_end_matches('\n')),
            }
            Ok(())
        }
        Command::Backfill {
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
        } => {
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
                let engine = Engine::new(pipeline)
                    .with_lease(chrono::Duration::seconds(i64::from(lease_seconds)));
                backfill(
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
        Command::State(StateCommand::Rebuild { config }) => {
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
        Command::State(StateCommand::Release {
            config,
            partition,
            force,
            format,
        }) => {
            let (engine, name) = repair(&config, &partition)?;
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
        Command::State(StateCommand::Reset {
            config,
            partition,
            force,
            format,
        }) => {
            let (engine, name) = repair(&config, &partition)?;
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
        Command::Changes {
            table,
            since_version,
            format,
        } => changes(&table, since_version, format).await,
    }
}

/// The engine and the partition's name for a repair by hand (`state release`,
/// `state reset`): `partition` as a period or a name.
fn repair(config: &ConfigArg, partition: &str) -> anyhow::Result<(Engine, String)> {
    let (pipeline, _) = config.load()?;
    let name = pipeline.partition_name(pipeline.parse_date(partition)?);
    executor::check_locations(&pipeline)?;
    Ok((Engine::new(pipeline), name))
}

/// A repair refused by a live claim says how to insist.
fn live_claim_hint(e: latefill::state::Error, done: &str) -> anyhow::Error {
    match e {
        latefill::state::Error::Claimed { .. } => {
            anyhow::Error::from(e).context(format!("not {done}; pass --force if that run is gone"))
        }
        e => e.into(),
    }
}

/// What a repair by hand changed: `text`, or the row as it was in JSON.
fn print_repair(
    engine: &Engine,
    done: &str,
    name: &str,
    before: &latefill::state::PartitionState,
    format: Output,
    text: &str,
) {
    match format {
        Output::Json => out!(
            "{}",
            serde_json::json!({done: name, "pipeline": engine.pipeline().name, "before": before})
        ),
        Output::Text => out!("{text}"),
    }
}

async fn changes(table: &str, since_version: Option<u64>, format: Output) -> anyhow::Result<()> {
    let url = executor::resolve_location("source", table, Path::new("."))?;
    if let Some(reason) = latefill::storage::local_location_problem(&url) {
        return Err(UsageError(format!("--table {table}: {reason}")).into());
    }
    let changes = latefill::detector::detect_changes(&url)
        .with_since_version(since_version)
        .await?;
    match format {
        Output::Json => out!("{}", serde_json::to_string_pretty(&changes)?),
        Output::Text => {
            out!(
                "{url} at version {}: {} partitions{}",
                changes.table_version,
                changes.partitions.len(),
                since_version.map_or(String::new(), |v| format!(" changed after version {v}"))
            );
            if let Some(reason) = &changes.inexact_reason {
                out!("not exact: {reason}");
            }
            let width = changes
                .partitions
                .iter()
                .map(|p| p.partition.len())
                .max()
                .unwrap_or(9)
                .max(9);
            out!("  {:<width$}  {:>11}  exact", "partition", "last change");
            for p in &changes.partitions {
                out!(
                    "  {:<width$}  {:>11}  {}",
                    p.partition,
                    p.last_change_version,
                    if p.exact { "yes" } else { "no (conservative)" }
                );
            }
        }
    }
    Ok(())
}

/// Prints a line on stdout; a reader that went away (`| head`) must neither stop the
/// work nor turn a success into a panic, so write errors are ignored.
fn emit_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

async fn backfill(
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

/// Awaits `work` (a run of `engine`) while handling SIGINT and SIGTERM, as
/// schedulers stop tasks: the first signal lets the partition under way finish and
/// starts no other ([`RunControl::stop`]); a second one gives back every claim the run
/// holds and returns [`Interrupted`] at once, abandoning the work.
async fn until_signalled<T>(
    engine: &Engine,
    control: &RunControl,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    let mut work = std::pin::pin!(work);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        // The signal first: a signal that wakes the work too (a test's pause point)
        // is seen before the work goes on.
        tokio::select! {
            biased;
            _ = async { tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = terminate.recv() => {} } } => {
                if !control.stop() {
                    eprintln!("interrupt: finishing the partition under way, starting no other (interrupt again to abandon it)");
                    continue;
                }
                let held = control.held();
                for partition in &held {
                    if let Err(e) = engine.state().release(partition, engine.run_id(), "interrupted").await {
                        tracing::warn!(%partition, error = %e, "could not release the claim; it expires with its lease");
                    }
                }
                return Err(Interrupted(format!(
                    "abandoned the run and released its {} claim(s)",
                    held.len()
                ))
                .into());
            }
            done = &mut work => return Ok(done),
        }
    }
}

fn print_outcome(engine: &Engine, origin: &str, o: &RunOutcome) {
    out!("pipeline {} ({origin})", engine.pipeline().name);
    out!("{}", describe_run(&o.run));
    print_detection(&o.detection, &o.late);
    for r in &o.backfilled {
        out!("backfilled: {}", describe_run(r));
    }
    for s in &o.skipped {
        out!("skipped {}: {}", s.partition, s.reason);
    }
    for f in &o.failed {
        out!("FAILED {}: {}", f.partition, f.reason);
    }
    if let Some(path) = &o.backfill_config {
        out!(
            "wrote the plan for an external scheduler to {}",
            path.display()
        );
    }
}

/// "version N", or what a missing version means.
fn processed_at(late: &latefill::plan::LatePartition) -> String {
    match late.processed_at {
        Some(v) => format!("version {v}"),
        None => "a version of the replaced source".into(),
    }
}

fn print_detection(d: &latefill::engine::DetectionSummary, late: &[latefill::plan::LatePartition]) {
    out!(
        "detection: source version {}, {} commit(s) read ({}){}",
        d.table_version,
        d.commits_read,
        d.mode,
        if d.exact { "" } else { ", NOT EXACT" }
    );
    if let Some(reason) = &d.inexact_reason {
        out!("  {reason}");
    }
    for partition in &d.unrecognised {
        out!("  warning: {partition}; it is never planned: fix its value in the source");
    }
    if let Some(reason) = &d.source_replaced {
        out!("  the source was REPLACED ({reason}): its partitions are judged by their files");
    }
    if late.is_empty() {
        out!("late partitions: none");
    }
    for l in late {
        out!(
            "late: {} (processed at {}, changed at {}{})",
            l.partition,
            processed_at(l),
            l.last_change_version,
            if l.exact { "" } else { " or before" }
        );
    }
}

/// The status rows as a table of text, a line each.
fn status_text(rows: &[latefill::engine::StatusRow]) -> String {
    use std::fmt::Write;
    let width = rows
        .iter()
        .map(|r| r.partition.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<width$}  {:<11}  {:>14}  {:>11}  {:<4}  {:>8}  note",
        "partition", "status", "source version", "last change", "late", "attempts"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    for r in rows {
        let note = match (&r.lease_expires_at, &r.last_error) {
            (Some(until), _) => format!(
                "leased by {} until {until}",
                r.owner.as_deref().unwrap_or("?")
            ),
            (None, Some(error)) => format!("error: {error}"),
            _ if r.stale => "stale: processed by another version of the SQL".to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "{:<width$}  {:<11}  {:>14}  {:>11}  {:<4}  {:>8}  {note}",
            r.partition,
            r.status,
            opt(r.source_version),
            opt(r.last_change_version),
            if r.late { "yes" } else { "no" },
            r.attempts
        );
    }
    text
}

fn describe_run(r: &RunReport) -> String {
    format!(
        "processed {} at source version {}: {} rows in ({} file{}), {} rows out, \
         target version {}, {} ms",
        r.partition,
        r.source_version,
        r.rows_read,
        r.files_read,
        if r.files_read == 1 { "" } else { "s" },
        r.rows_written,
        r.target_version,
        r.duration_ms
    )
}

fn init(path: &Path, force: bool, hourly: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        return Err(UsageError(format!(
            "{} exists; pass --force to replace it",
            path.display()
        ))
        .into());
    }
    let granularity = if hourly {
        latefill::Granularity::Hour
    } else {
        latefill::Granularity::Day
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

async fn demo(dir: &Path, output: Output) -> anyhow::Result<()> {
    use latefill::demo::DemoEvent;
    let pipeline = latefill::demo::prepare(dir)?;
    let text = output == Output::Text;
    if text {
        out!("latefill demo in {}", dir.display());
        out!("  source {}", pipeline.source);
        out!("  target {}", pipeline.target);
        out!("  state  {}", pipeline.state);
        out!(
            "\n1. {} rows a day for {} days, each day run as it arrives:",
            latefill::demo::DEMO_ROWS_PER_DAY,
            latefill::demo::demo_dates().len(),
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
    let events = latefill::demo::run(&pipeline, |event| {
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
