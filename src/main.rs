//! The `latefill` command line: a thin layer over the library crates.
//!
//! Flags are parsed by clap, turned into validated values (dates, pipeline) before any
//! storage is touched, handed to the library, and the outcome printed as text or JSON.
//! Errors map to the exit codes documented in [`exit`] and in the README.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use latefill::datagen::cli::GenerateArgs;
use latefill::executor::{self, ErrorClass, PartitionDate, Pipeline, RunReport, run_partition};

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
}

const LONG_ABOUT: &str = "\
latefill reprocesses the partitions of a Delta table whose data arrived late.

A pipeline (a TOML file, see `latefill init`) names a source Delta table partitioned by
day, a DataFusion SQL transform and a target Delta table. `latefill run --date D`
processes day D: it pins the source version, reads only D's files, runs the SQL and
replaces exactly partition D of the target in one commit that records the source
version it reflects.

Start with `latefill demo`: it builds a sample devices table under ./latefill-demo
and runs the default pipeline over a week of it.";

#[derive(Debug, Parser)]
#[command(name = "latefill", version, about = "Late-data-aware Delta Lake backfills", long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a week of sample device data and run the default pipeline on it.
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
    },
    /// Append generated device rows for one day to a Delta table (one commit).
    Generate(GenerateArgs),
    /// Process one partition: read it at a pinned source version, transform it and
    /// replace it in the target.
    ///
    /// Re-running a date rewrites the partition from the source as it is now, so a run
    /// after late data arrived reflects the new rows, and a repeated run changes
    /// nothing but the target's version.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// The partition to process, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: String,
        /// Read the source at this version instead of the latest.
        #[arg(long, value_name = "V")]
        source_version: Option<u64>,
        /// When the source has no rows for the date, write an empty partition instead
        /// of failing.
        #[arg(long)]
        allow_empty: bool,
        /// Output format: `json` prints one JSON object on stdout.
        #[arg(long, visible_alias = "format", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
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

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The pipeline file. Default: ./latefill.toml if it exists, otherwise the built-in
    /// devices pipeline with its tables under ./latefill-demo.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> executor::Result<(Pipeline, String)> {
        match &self.config {
            Some(path) => Ok((Pipeline::from_file(path)?, path.display().to_string())),
            None if Path::new("latefill.toml").exists() => Ok((
                Pipeline::from_file("latefill.toml")?,
                "latefill.toml".to_owned(),
            )),
            None => Ok((
                Pipeline::default_devices(Path::new("."))?,
                "built-in devices pipeline".to_owned(),
            )),
        }
    }
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
    let output = match &cli.command {
        Command::Demo { output, .. }
        | Command::Run { output, .. }
        | Command::Changes { format: output, .. } => *output,
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
            eprintln!("error: {err:#}");
            if output == Output::Json {
                let kind = match code {
                    exit::USAGE => "usage",
                    exit::DATA => "data",
                    _ => "failure",
                };
                let json = serde_json::json!({
                    "error": { "kind": kind, "exit_code": code, "message": format!("{err:#}") }
                });
                println!("{json}");
            }
            ExitCode::from(code)
        }
    }
}

/// Maps an error to its exit code by the class of the library error inside it.
fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<executor::Error>() {
            return executor_code(e);
        }
        if let Some(e) = cause.downcast_ref::<latefill::datagen::Error>() {
            return match e {
                latefill::datagen::Error::Delta { .. } => exit::FAILURE,
                _ => exit::USAGE,
            };
        }
        if let Some(e) = cause.downcast_ref::<latefill::demo::DemoError>() {
            use latefill::demo::DemoError;
            return match e {
                DemoError::DirectoryInUse(_) => exit::USAGE,
                DemoError::Run(e) => executor_code(e),
                _ => exit::FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<latefill::detector::Error>() {
            use latefill::detector::Error as D;
            return match e {
                D::Storage { .. } | D::Delta { .. } => exit::FAILURE,
                _ => exit::DATA,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
    }
    exit::FAILURE
}

fn executor_code(e: &executor::Error) -> u8 {
    match e.class() {
        ErrorClass::Usage => exit::USAGE,
        ErrorClass::Data => exit::DATA,
        _ => exit::FAILURE,
    }
}

/// A usage problem found by the binary itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo { dir, output } => demo(&dir, output).await,
        Command::Init { path, force } => init(&path, force),
        Command::Generate(args) => {
            let report = args.to_options()?.write().await?;
            println!(
                "appended {} rows to {} of {} (version {})",
                report.rows, report.partition, report.table, report.table_version
            );
            Ok(())
        }
        Command::Run {
            config,
            date,
            source_version,
            allow_empty,
            output,
        } => {
            // Validate every argument before any storage is touched.
            let date = PartitionDate::parse(&date)?;
            let (pipeline, origin) = config.load()?;
            let report = run_partition(&pipeline, date)
                .with_source_version(source_version)
                .with_allow_empty(allow_empty)
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&report)?),
                Output::Text => {
                    println!("pipeline {} ({origin})", pipeline.name);
                    println!("{}", describe_run(&report));
                }
            }
            Ok(())
        }
        Command::Changes {
            table,
            since_version,
            format,
        } => changes(&table, since_version, format).await,
    }
}

async fn changes(table: &str, since_version: Option<u64>, format: Output) -> anyhow::Result<()> {
    let url = executor::resolve_location("source", table, Path::new("."))?;
    let changes = latefill::detector::detect_changes(&url)
        .with_since_version(since_version)
        .await?;
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
        Output::Text => {
            println!(
                "{url} at version {}: {} partitions{}",
                changes.table_version,
                changes.partitions.len(),
                since_version.map_or(String::new(), |v| format!(" changed after version {v}"))
            );
            if let Some(reason) = &changes.inexact_reason {
                println!("not exact: {reason}");
            }
            let width = changes
                .partitions
                .iter()
                .map(|p| p.partition.len())
                .max()
                .unwrap_or(9)
                .max(9);
            println!("  {:<width$}  {:>11}  exact", "partition", "last change");
            for p in &changes.partitions {
                println!(
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

fn init(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        return Err(UsageError(format!(
            "{} exists; pass --force to replace it",
            path.display()
        ))
        .into());
    }
    std::fs::write(path, executor::DEFAULT_PIPELINE_TOML)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {}: edit it, then `latefill run --config {} --date YYYY-MM-DD`",
        path.display(),
        path.display()
    );
    Ok(())
}

async fn demo(dir: &Path, output: Output) -> anyhow::Result<()> {
    let pipeline = latefill::demo::prepare(dir)?;
    if output == Output::Text {
        println!("latefill demo in {}", dir.display());
        println!("  source {}", pipeline.source);
        println!("  target {}", pipeline.target);
        println!(
            "generating {} rows per day for {} days, then running pipeline {} for each:",
            latefill::demo::DEMO_ROWS_PER_DAY,
            latefill::demo::demo_dates().len(),
            pipeline.name
        );
        println!(
            "  {:<10}  {:>14}  {:>8}  {:>8}  {:>14}  {:>8}",
            "date", "source version", "rows in", "rows out", "target version", "ms"
        );
    }
    let interactive = std::io::stdout().is_terminal();
    let steps = latefill::demo::run(&pipeline, |s| {
        if output == Output::Text {
            println!(
                "  {:<10}  {:>14}  {:>8}  {:>8}  {:>14}  {:>8}",
                s.date,
                s.run.source_version,
                s.run.rows_read,
                s.run.rows_written,
                s.run.target_version,
                s.run.duration_ms
            );
        }
    })
    .await?;
    match output {
        Output::Json => println!("{}", serde_json::json!({ "steps": steps })),
        Output::Text => {
            println!(
                "done: {} partitions processed into {}",
                steps.len(),
                pipeline.target
            );
            if interactive {
                println!(
                    "next: `latefill run --date 2024-01-03` reprocesses a day from the demo tables"
                );
            }
        }
    }
    Ok(())
}
