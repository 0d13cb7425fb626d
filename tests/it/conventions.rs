//! The command line's conventions: one output flag on every command, defaults from
//! the environment, `--version`, completions and a man page, logs for collectors.

use std::process::{Command, Output};

use crate::common::*;

/// Runs the `latefill` binary in `ws` with `args` and the environment `env`.
fn latefill_with_env(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latefill"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(ws.dir.path())
        .output()
        .expect("the latefill binary runs")
}

/// `--format json` works on every command that prints a result, `--output json` is
/// the same flag, and LATEFILL_FORMAT sets it.
#[tokio::test]
async fn every_command_takes_format_and_its_alias_output() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 200, 1).await;
    let config = ws.config.to_str().unwrap();
    let source = ws.source_path();
    let commands: [Vec<&str>; 6] = [
        vec!["run", "--config", config, "--date", "2024-01-01"],
        vec!["detect", "--config", config, "--date", "2024-01-02"],
        vec!["status", "--config", config],
        vec!["changes", "--table", source.to_str().unwrap()],
        vec![
            "backfill",
            "--config",
            config,
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-01",
        ],
        vec!["demo", "--dir", "demo"],
    ];
    for command in &commands {
        for flag in ["--format", "--output"] {
            let mut args = command.clone();
            args.extend([flag, "json"]);
            let out = ws.latefill(&args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            // One JSON value (an array for status), or JSON lines.
            let text = stdout(&out);
            let first = text.lines().next().unwrap_or_default();
            let parsed = serde_json::from_str::<serde_json::Value>(text.trim())
                .or_else(|_| serde_json::from_str::<serde_json::Value>(first));
            assert!(parsed.is_ok(), "{args:?}: not JSON: {text}");
        }
        let out = latefill_with_env(&ws, command, &[("LATEFILL_FORMAT", "json")]);
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
        assert!(
            stdout(&out).starts_with('{') || stdout(&out).starts_with('['),
            "{command:?}"
        );
    }
}

/// LATEFILL_CONFIG and LATEFILL_PIPELINE stand for --config and --pipeline, and say
/// so in --help; a flag given wins.
#[tokio::test]
async fn the_environment_gives_the_config_and_a_flag_overrides_it() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 100, 1).await;
    let config = ws.config.to_str().unwrap();
    let run = latefill_with_env(
        &ws,
        &["run", "--date", "2024-01-01", "--format", "json"],
        &[("LATEFILL_CONFIG", config)],
    );
    assert_eq!(json(&run)["pipeline"], "devices_daily");
    // Without it, the same command in this directory would use the built-in demo
    // pipeline on ./latefill-demo, which has no data: --config wins over the variable.
    let wrong = latefill_with_env(
        &ws,
        &["status", "--config", config, "--format", "json"],
        &[("LATEFILL_CONFIG", "/nonexistent/latefill.toml")],
    );
    assert_eq!(json(&wrong).as_array().unwrap().len(), 1);
    let help = stdout(&ws.latefill(&["run", "--help"]));
    assert!(help.contains("[env: LATEFILL_CONFIG="), "{help}");
    assert!(help.contains("[env: LATEFILL_FORMAT="), "{help}");
}

/// `--version` names the commit it was built from, the build date and the stores.
#[test]
fn version_names_the_commit_the_date_and_the_stores() {
    let out = Command::new(env!("CARGO_BIN_EXE_latefill"))
        .arg("--version")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success());
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap_or_else(|| panic!("{text}"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=9", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| stdout(&o).trim().to_owned());
    match head {
        // Built from this checkout: its commit (rebuilt when HEAD moves).
        Some(head) => assert_eq!(commit, head, "{text}"),
        None => assert_eq!(commit, "unknown", "{text}"),
    }
    let built = text
        .lines()
        .find_map(|l| l.strip_prefix("built: "))
        .unwrap();
    assert!(
        chrono::NaiveDate::parse_from_str(built, "%Y-%m-%d").is_ok(),
        "{text}"
    );
    for store in ["file://", "s3://", "az://", "gs://"] {
        assert!(text.contains(store), "{text}");
    }
}

/// Completion scripts for bash, zsh and fish, and a man page, from the same
/// definitions as --help; a shell it does not know is a usage error.
#[test]
fn completions_and_a_man_page_are_generated_from_the_definitions() {
    let latefill = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_latefill"))
            .args(args)
            .output()
            .unwrap()
    };
    for (shell, marker) in [
        ("bash", "complete -F _latefill"),
        ("zsh", "#compdef latefill"),
        ("fish", "complete -c latefill"),
    ] {
        let out = latefill(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["backfill", "strategy", "dry-run"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let out = latefill(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let man = stdout(&latefill(&["man"]));
    assert!(man.contains(".TH latefill 1"), "{man}");
    assert!(
        man.contains("backfill") && man.contains("Late\\-data\\-aware"),
        "{man}"
    );
}

/// `--log-format json` writes each log line as a JSON object; RUST_LOG=debug leaves
/// out DataFusion's plans unless a directive names DataFusion.
#[tokio::test]
async fn logs_for_collectors_and_without_plan_dumps() {
    let ws = Workspace::new();
    ws.generate("2024-01-01", 100, 1).await;
    let config = ws.config.to_str().unwrap();
    let out = ws.latefill(&[
        "run",
        "-v",
        "--log-format",
        "json",
        "--config",
        config,
        "--date",
        "2024-01-01",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let logs = stderr(&out);
    assert!(logs.lines().count() >= 2, "{logs}");
    for line in logs.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string() && entry["target"].is_string(),
            "{line}"
        );
    }

    let datafusion_lines = |directives: &str| {
        let out = latefill_with_env(
            &ws,
            &["run", "--config", config, "--date", "2024-01-01"],
            &[("RUST_LOG", directives)],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
            .lines()
            .filter(|l| l.contains(" datafusion"))
            .count()
    };
    assert_eq!(datafusion_lines("debug"), 0);
    assert!(datafusion_lines("debug,datafusion=debug") > 0);
}
