//! Exit codes, and the one place where errors become them and their messages.

use crate::ErrorClass;
use crate::storage::StoreFailure;

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

/// The error and its causes joined with ": ", leaving out a cause whose text the
/// message already holds (errors that name their source in their own text).
pub(crate) fn error_message(err: &anyhow::Error) -> String {
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
pub(crate) fn store_failure_message(
    err: &anyhow::Error,
    texts: &[String],
    failure: &StoreFailure,
) -> String {
    let ours = |cause: &(dyn std::error::Error + 'static)| {
        cause.is::<crate::engine::Error>()
            || cause.is::<crate::executor::Error>()
            || cause.is::<crate::state::Error>()
            || cause.is::<crate::detector::Error>()
            || cause.is::<crate::datagen::Error>()
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
pub(crate) fn without_backtrace(text: &str) -> String {
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

/// Maps an error to its exit code: the binary's own errors, else the class of the
/// library error inside it ([`crate::class_of`]); the one place where classes
/// become exit codes.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    // A bucket, credentials or endpoint that do not work are configuration to fix.
    if StoreFailure::of(err.as_ref()).is_some() {
        return USAGE;
    }
    let class = err.chain().find_map(|cause| {
        if cause.is::<UsageError>() {
            Some(ErrorClass::Usage)
        } else if cause.is::<DataFailure>() {
            Some(ErrorClass::Data)
        } else {
            cause
                .downcast_ref::<crate::cli::demo::DemoError>()
                .map(crate::cli::demo::DemoError::class)
        }
    });
    if err.chain().any(|cause| cause.is::<Interrupted>()) {
        return INTERRUPTED;
    }
    match class.or_else(|| crate::class_of(err.as_ref())) {
        Some(ErrorClass::Usage) => USAGE,
        Some(ErrorClass::Data) => DATA,
        Some(ErrorClass::Contention) => CONTENTION,
        _ => FAILURE,
    }
}

/// Prints `err` on stderr (and, for `--output json`, as a JSON object on stdout) and
/// returns its exit code.
pub(crate) fn report(err: &anyhow::Error, output: crate::cli::args::Output) -> u8 {
    let code = exit_code(err);
    let message = error_message(err);
    eprintln!("error: {message}");
    if output == crate::cli::args::Output::Json {
        let kind = match code {
            USAGE => "usage",
            DATA => "data",
            CONTENTION => "contention",
            INTERRUPTED => "interrupted",
            _ => "failure",
        };
        let json = serde_json::json!({
            "error": { "kind": kind, "exit_code": code, "message": message }
        });
        out!("{json}");
    }
    code
}

/// A usage problem found by the binary itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// The run was stopped by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: {0}")]
pub(crate) struct Interrupted(pub(crate) String);

/// Work that failed on the data, reported after the rest was done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DataFailure(pub(crate) String);
