//! The `latefill` command line: a thin layer over the library, behind the `cli`
//! feature (on by default). The `latefill` binary and the Python package's `latefill`
//! command both call [`main`].
//!
//! ```text
//! mod.rs       parse the arguments, start the runtime, dispatch, exit
//! args.rs      what each command takes; --config/--pipeline into pipelines
//! commands/    one module a command: validate, call the library, render
//! render.rs    text renderings, and the one way lines reach stdout
//! signals.rs   SIGINT/SIGTERM: finish what is under way, then give claims back
//! progress.rs  a backfill as it goes: progress bar, lines, JSON lines
//! exit.rs      exit codes, messages, and the one mapping from error class to code
//! demo.rs, status_page.rs   presentation: the demo's story, the HTML status page
//! ```
//!
//! Flags are parsed by clap and turned into validated values (dates, pipelines)
//! before any storage is touched; the outcome is printed as text or JSON. Errors map to
//! the exit codes [`SUCCESS`], [`USAGE`], [`DATA`], [`CONTENTION`], [`FAILURE`] and
//! [`INTERRUPTED`] (and the README).

use std::ffi::OsString;

use clap::Parser;

/// `println!` that ignores a closed stdout (see [`render::emit_line`]).
macro_rules! out {
    () => { $crate::cli::render::emit_line("") };
    ($($arg:tt)*) => { $crate::cli::render::emit_line(&format!($($arg)*)) };
}

mod args;
mod commands;
mod demo;
mod exit;
mod progress;
mod render;
mod signals;
mod status_page;

use args::{Cli, Command, Output, StateCommand, StatusFormat};

pub use exit::{CONTENTION, DATA, FAILURE, INTERRUPTED, SUCCESS, USAGE};

/// Logs go to stderr, so stdout stays the command's output (JSON included). The
/// level comes from RUST_LOG when set, else from -v/-q; `format` is `--log-format`.
fn init_logging(verbose: u8, quiet: bool, format: args::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let ours = [
        "latefill",
        "latefill_core",
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
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::new(quiet_plans(&directives)),
        Err(_) => EnvFilter::new(default),
    };
    // A process that runs the command line twice (the Python package) keeps the
    // first subscriber.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        args::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        args::LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// RUST_LOG's `directives`, with DataFusion's and its SQL parser's debug output (each
/// plan, whole, at every step of the optimizer) kept to warnings unless a directive
/// names them: `RUST_LOG=debug` is readable, `RUST_LOG=debug,datafusion=debug` shows
/// the plans.
fn quiet_plans(directives: &str) -> String {
    let mut all = directives.to_owned();
    for noisy in ["datafusion", "sqlparser"] {
        if !directives.contains(noisy) {
            all.push_str(&format!(",{noisy}=warn"));
        }
    }
    all.trim_start_matches(',').to_owned()
}

/// What the command line says of `err`: its exit code ([`USAGE`], [`DATA`], ...) and
/// its message (the error and its causes; for a store failure, what to do). The
/// Python package raises its exceptions from these.
pub fn describe(err: &anyhow::Error) -> (u8, String) {
    (exit::exit_code(err), exit::error_message(err))
}

/// Runs the command line on `args` (the program's name first, as
/// [`std::env::args_os`] gives them) and returns its exit code ([`SUCCESS`],
/// [`USAGE`], ...): the `latefill` binary exits with
/// `latefill::cli::main(std::env::args_os())`.
/// Errors are printed to stderr (or as JSON on stdout with `--format json`); `--help`
/// and bad arguments print and exit the process as clap does.
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    let output = match &cli.command {
        Command::Demo(args::DemoArgs { output, .. })
        | Command::Run(args::RunArgs { output, .. })
        | Command::Detect(args::DetectArgs { output, .. })
        | Command::Backfill(args::BackfillArgs { output, .. })
        | Command::Changes(args::ChangesArgs { format: output, .. })
        | Command::Lateness(args::LatenessArgs { format: output, .. })
        | Command::State(
            StateCommand::Release(args::ReleaseArgs { format: output, .. })
            | StateCommand::Reset(args::ResetArgs { format: output, .. }),
        ) => *output,
        Command::Status(args::StatusArgs {
            format: StatusFormat::Json,
            ..
        }) => Output::Json,
        _ => Output::Text,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    // What the command left running (a state checkpoint) ends before the runtime does.
    let outcome = runtime.block_on(async {
        let outcome = dispatch(cli.command).await;
        crate::settle().await;
        outcome
    });
    match outcome {
        Ok(()) => exit::SUCCESS,
        Err(err) => exit::report(&err, output),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => commands::demo::demo(args).await,
        Command::Init(args) => commands::init::init(args),
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
        Command::Run(args) => commands::run::run(args).await,
        Command::Detect(args) => commands::detect::detect(args).await,
        Command::Status(args) => commands::status::status(args).await,
        Command::Lateness(args) => commands::lateness::lateness(args).await,
        Command::Backfill(args) => commands::backfill::backfill(args).await,
        Command::State(StateCommand::Rebuild(args)) => commands::state::rebuild(args).await,
        Command::State(StateCommand::Release(args)) => commands::state::release(args).await,
        Command::State(StateCommand::Reset(args)) => commands::state::reset(args).await,
        Command::Changes(args) => commands::changes::changes(args).await,
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let mut out = std::io::stdout().lock();
            clap_complete::generate(args.shell, &mut command, "latefill", &mut out);
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&page);
            Ok(())
        }
    }
}
