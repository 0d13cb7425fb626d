//! `latefill status --format html`, rendered by a real browser: headless Chromium
//! (Debian's `chromium`, which scripts/test.sh installs).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use latefill::executor::FAILPOINT_ENV;

use crate::common::*;

/// The Chromium binary: `$LATEFILL_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> String {
    let binary = std::env::var("LATEFILL_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&binary).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{binary} is not installed: run the tests through scripts/test.sh, which installs \
         Debian's chromium, or set LATEFILL_CHROMIUM"
    );
    binary
}

/// Loads `page` in headless Chromium: the DOM after its scripts ran, and the console
/// messages it logged.
fn render(page: &Path) -> (String, Vec<String>) {
    let url = url::Url::from_file_path(page).unwrap();
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(url.as_str())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let console = stderr(&out)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (stdout(&out), console)
}

/// `data-kind` of every cell in the rendered DOM, counted.
fn rendered_cells(dom: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for cell in dom.split("<span class=\"cell ").skip(1) {
        if let Some(kind) = cell
            .split("data-kind=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        {
            *counts.entry(kind.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// The legend's count of `kind`, as rendered.
fn legend_count(dom: &str, kind: &str) -> usize {
    let marker = format!("data-count=\"{kind}\">");
    dom.split(&marker)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no legend count for {kind}"))
}

/// A state with all five kinds of cell, through the CLI: processed, late, failed,
/// processing (a run killed after its claim) and never run. The page loads without a
/// console error, its cells and legend match `status --format json`, its failed list
/// gives a command that reprocesses the failed partition, and its lateness view
/// counts what `latefill lateness` counts.
#[tokio::test]
async fn the_status_page_shows_every_kind_of_partition_in_a_browser() {
    let ws = Workspace::new();
    for d in 1..=6 {
        ws.generate(&format!("2024-01-0{d}"), 200, d).await;
    }
    for d in 1..=3 {
        let out = ws.run_cli(&["--date", &format!("2024-01-0{d}")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let broken = ws.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&ws.config).unwrap().replace(
            // Plans, but its rows name another partition: a failure the data shows.
            "count(*) AS devices, event_time FROM source GROUP BY type, version, event_time",
            "count(*) AS devices, '2024-01-01' AS event_time FROM source GROUP BY type, version",
        ),
    )
    .unwrap();
    let failed = ws.latefill(&[
        "run",
        "--config",
        broken.to_str().unwrap(),
        "--date",
        "2024-01-04",
    ]);
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    let killed = Command::new(env!("CARGO_BIN_EXE_latefill"))
        .args([
            "run",
            "--config",
            ws.config.to_str().unwrap(),
            "--date",
            "2024-01-05",
        ])
        .env(FAILPOINT_ENV, "after-claim")
        .current_dir(ws.dir.path())
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "{}", stderr(&killed));
    ws.generate("2024-01-02", 50, 20).await;

    let status = json(&ws.latefill(&[
        "status",
        "--config",
        ws.config.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for row in status.as_array().unwrap() {
        let kind = match (
            row["status"].as_str().unwrap(),
            row["late"].as_bool().unwrap(),
        ) {
            ("processed", true) => "late",
            ("processed", false) => "processed",
            ("unprocessed", _) => "never-run",
            (other, _) => other,
        };
        *expected.entry(kind.to_owned()).or_default() += 1;
    }
    assert_eq!(expected.len(), 5, "all five kinds: {expected:?}");

    let page = ws.dir.path().join("status.html");
    let out = ws.latefill(&[
        "status",
        "--config",
        ws.config.to_str().unwrap(),
        "--format",
        "html",
        "--out",
        page.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    for external in ["http://", "https://", "src=", "@import", "url("] {
        assert!(
            !html.contains(external),
            "self-contained: found {external:?}"
        );
    }

    let (dom, console) = render(&page);
    assert!(console.is_empty(), "console messages: {console:?}");
    assert_eq!(rendered_cells(&dom), expected, "cells by kind");
    for (kind, n) in &expected {
        assert_eq!(legend_count(&dom, kind), *n, "legend: {kind}");
    }
    assert!(
        dom.contains("a row outside partition event_time=2024-01-04"),
        "the failed cell says why"
    );

    // The failed list: each failed partition once, with its error and the command
    // that reprocesses it.
    assert_eq!(
        dom.matches("class=\"failed-partition\"").count(),
        expected["failed"],
        "{dom}"
    );
    assert_eq!(legend_count(&dom, "failed-list"), expected["failed"]);
    let command = format!(
        "<code>latefill backfill --config {} --from 2024-01-04 --to 2024-01-04</code>",
        ws.config.display()
    );
    assert!(dom.contains(&command), "no {command} in {dom}");
    let out = ws.latefill(&[
        "backfill",
        "--config",
        ws.config.to_str().unwrap(),
        "--from",
        "2024-01-04",
        "--to",
        "2024-01-04",
    ]);
    assert!(out.status.success(), "the page's command: {}", stderr(&out));

    // The lateness view: the histogram holds every late change `latefill lateness`
    // counts, and the late cell says how late its last change was.
    let lateness = json_lines(&ws.latefill(&[
        "lateness",
        "--config",
        ws.config.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .remove(0);
    assert_eq!(lateness["late_changes"], 1, "{lateness}");
    let in_bars: u64 = dom
        .split("data-changes=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(in_bars, 1, "{dom}");
    assert!(dom.contains("How late the data arrives"), "{dom}");
    assert!(dom.contains("last late change: version"), "{dom}");

    // The console check can fail: a page with a broken script is caught.
    let broken_page = ws.dir.path().join("broken.html");
    std::fs::write(
        &broken_page,
        html.replace("<script>", "<script>no_such_function();"),
    )
    .unwrap();
    let (_, console) = render(&broken_page);
    assert!(
        console.iter().any(|l| l.contains("no_such_function")),
        "{console:?}"
    );
}
