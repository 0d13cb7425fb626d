//! Shared helpers of the CLI tests: the library-level ones from `latefill-testkit`
//! (a workspace, table readers), and the binary's.

use std::path::Path;
use std::process::{Command, Output};

pub use latefill_testkit::*;

/// The `latefill` binary, run in a [`Workspace`].
pub trait Cli {
    /// Runs the `latefill` binary with `args` in this workspace.
    fn latefill(&self, args: &[&str]) -> Output;
    /// Runs `latefill run --config <pipeline> ...`.
    fn run_cli(&self, extra: &[&str]) -> Output;
    /// `latefill status --config <config> --format json`, parsed.
    fn status_json(&self, config: &Path) -> serde_json::Value;
    /// `latefill detect --config <config> --date <date> --output json`, parsed.
    fn detect_json(&self, config: &Path, date: &str) -> serde_json::Value;
    /// `latefill backfill --config <config> --from --to <extra> --output json`: its
    /// JSON lines, asserting success.
    fn backfill_lines(
        &self,
        config: &Path,
        from: &str,
        to: &str,
        extra: &[&str],
    ) -> Vec<serde_json::Value>;
}

impl Cli for Workspace {
    /// Runs the `latefill` binary with `args` in this workspace.
    fn latefill(&self, args: &[&str]) -> Output {
        latefill_in(self.dir.path(), args)
    }

    /// Runs `latefill run --config <pipeline> ...`.
    fn run_cli(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--config", self.config.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.latefill(&args)
    }

    /// `latefill status --config <config> --format json`, parsed.
    fn status_json(&self, config: &Path) -> serde_json::Value {
        json(&self.latefill(&[
            "status",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ]))
    }

    /// `latefill detect --config <config> --date <date> --output json`, parsed.
    fn detect_json(&self, config: &Path, date: &str) -> serde_json::Value {
        let config = config.to_str().unwrap();
        json(&self.latefill(&[
            "detect", "--config", config, "--date", date, "--output", "json",
        ]))
    }

    /// `latefill backfill --config <config> --from --to <extra> --output json`: its
    /// JSON lines, asserting success.
    fn backfill_lines(
        &self,
        config: &Path,
        from: &str,
        to: &str,
        extra: &[&str],
    ) -> Vec<serde_json::Value> {
        let config = config.to_str().unwrap();
        let mut args = vec!["backfill", "--config", config, "--from", from, "--to", to];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--output", "json"]);
        json_lines(&self.latefill(&args))
    }
}

/// Starts the `latefill` binary with `args` in `dir`, its output piped, for tests that
/// run several at once.
pub fn spawn_latefill(dir: &Path, args: &[&str]) -> std::process::Child {
    use std::process::Stdio;
    Command::new(env!("CARGO_BIN_EXE_latefill"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the latefill binary starts")
}

/// The partitions a `status --format json` array marks late.
pub fn late_partitions(status: &serde_json::Value) -> Vec<String> {
    status
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {status}"))
        .iter()
        .filter(|r| r["late"] == true)
        .map(|r| r["partition"].as_str().unwrap().to_owned())
        .collect()
}

pub fn latefill_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latefill"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the latefill binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `out` succeeded and parses its stdout as one JSON value.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}\n{}", stderr(out), stdout(out));
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {}", stdout(out)))
}

/// Asserts that `out` succeeded and parses its stdout as JSON lines.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}\n{}", stderr(out), stdout(out));
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `partition` field of each object of a JSON array.
pub fn partitions(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|p| p["partition"].as_str().unwrap().to_owned())
        .collect()
}
