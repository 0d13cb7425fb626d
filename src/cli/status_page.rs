//! `latefill status --format html`: the partitions of each pipeline as a grid of
//! coloured cells, in one self-contained HTML file (no network, no external script,
//! style or font).
//!
//! A row holds a month of daily partitions (a day of hourly ones, a year of monthly
//! ones: the layout follows the pipeline's granularity), so ten years of days are 120
//! rows of 31 cells. Each cell is coloured by its kind ([`Kind`]) and says the rest in
//! its tooltip: versions, owner and lease, the last run's times, the last error, how
//! late its last late change was. Under the grid: the failed partitions with their
//! errors and the command that reprocesses each, and how late the data arrives.
//!
//! The page is `status_page.html`, a [minijinja] template, which escapes every value
//! it is given: what the state holds is text, never markup. This module only builds
//! the values.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use latefill_core::Granularity;
use latefill_executor::Pipeline;
use serde::Serialize;

use crate::cli::progress::{duration, span, thousands};
use crate::engine::{LatenessReport, StatusRow};

/// What a cell shows: one of five kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Processed, and not changed in the source since.
    Processed,
    /// Processed, and changed in the source since: to reprocess.
    Late,
    /// The last run failed.
    Failed,
    /// Claimed by a run now.
    Processing,
    /// In the source, never processed.
    NeverRun,
}

impl Kind {
    /// Every kind, in legend order.
    pub const ALL: [Kind; 5] = [
        Kind::Processed,
        Kind::Late,
        Kind::Failed,
        Kind::Processing,
        Kind::NeverRun,
    ];

    /// The kind of a status row.
    pub fn of(row: &StatusRow) -> Kind {
        match row.status.as_str() {
            "failed" => Kind::Failed,
            "processing" => Kind::Processing,
            "unprocessed" => Kind::NeverRun,
            _ if row.late => Kind::Late,
            _ => Kind::Processed,
        }
    }

    /// The name used in the page (`data-kind`) and in its legend.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Processed => "processed",
            Kind::Late => "late",
            Kind::Failed => "failed",
            Kind::Processing => "processing",
            Kind::NeverRun => "never-run",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Kind::Processed => "#2e9e5b",
            Kind::Late => "#e0a400",
            Kind::Failed => "#d1343f",
            Kind::Processing => "#3b7dd8",
            Kind::NeverRun => "#b8bec7",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Processed => "processed",
            Kind::Late => "late (changed since processed)",
            Kind::Failed => "failed",
            Kind::Processing => "processing",
            Kind::NeverRun => "never run",
        }
    }
}

/// One pipeline's part of the page.
#[derive(Debug, Clone)]
pub struct PipelineStatus<'a> {
    /// The pipeline.
    pub pipeline: &'a Pipeline,
    /// Its status rows.
    pub rows: &'a [StatusRow],
    /// How late its data arrives, if that could be read.
    pub lateness: Option<&'a LatenessReport>,
}

/// The page for `pipelines`, as of `now`. `config` is the `--config` the reader
/// gave (none: the default), for the commands the page shows.
pub fn render(
    pipelines: &[PipelineStatus<'_>],
    now: DateTime<Utc>,
    config: Option<&std::path::Path>,
) -> Result<String, minijinja::Error> {
    let config_arg = config.map_or(String::new(), |path| {
        format!(" --config {}", shell_word(&path.display().to_string()))
    });
    let title = match pipelines {
        [one] => format!("latefill status: {}", one.pipeline.name),
        _ => "latefill status".to_owned(),
    };
    let several = pipelines.len() > 1;
    let page = Page {
        title,
        now: now.format("%Y-%m-%d %H:%M:%S").to_string(),
        kinds: Kind::ALL
            .iter()
            .map(|k| KindView {
                name: k.name(),
                colour: k.colour(),
            })
            .collect(),
        pipelines: pipelines
            .iter()
            .map(|p| section(p, &config_arg, several))
            .collect(),
    };
    let mut env = minijinja::Environment::new();
    // `.html`: every value is escaped unless the template says otherwise.
    env.add_template("status_page.html", TEMPLATE)?;
    env.get_template("status_page.html")?.render(&page)
}

/// The page's template.
const TEMPLATE: &str = include_str!("status_page.html");

#[derive(Serialize)]
struct Page {
    title: String,
    now: String,
    kinds: Vec<KindView>,
    pipelines: Vec<Section>,
}

#[derive(Serialize)]
struct KindView {
    name: &'static str,
    colour: &'static str,
}

#[derive(Serialize)]
struct Section {
    name: String,
    source: String,
    target: String,
    legend: Vec<LegendEntry>,
    total: usize,
    warned: usize,
    header: Vec<usize>,
    rows: Vec<GridRow>,
    failed: Vec<Failed>,
    lateness: Option<LatenessView>,
}

#[derive(Serialize)]
struct LegendEntry {
    kind: &'static str,
    label: &'static str,
    count: usize,
}

#[derive(Serialize)]
struct GridRow {
    label: String,
    cells: Vec<Option<Cell>>,
}

#[derive(Serialize)]
struct Cell {
    kind: &'static str,
    stale: bool,
    /// An audit of severity `warn` failed on its last run.
    warned: bool,
    partition: String,
    tip: String,
}

#[derive(Serialize)]
struct Failed {
    partition: String,
    /// The error, or its first part when it is long (a failed audit's samples).
    error: String,
    /// The rest of a long error, shown on a click.
    more: Option<String>,
    attempts: u64,
    updated_at: String,
    command: String,
}

#[derive(Serialize)]
struct LatenessView {
    summary: String,
    percentiles: Option<String>,
    lookback_99: Option<u64>,
    lookback_100: Option<u64>,
    bars: Vec<Bar>,
}

#[derive(Serialize)]
struct Bar {
    label: &'static str,
    changes: usize,
    /// Its length, in percent of the longest bar.
    width: usize,
}

/// `word` as one word of a POSIX shell command line.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn section(status: &PipelineStatus<'_>, config_arg: &str, several: bool) -> Section {
    let PipelineStatus {
        pipeline,
        rows,
        lateness,
    } = *status;
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for row in rows {
        *counts.entry(Kind::of(row)).or_default() += 1;
    }
    let legend = Kind::ALL
        .iter()
        .map(|&k| LegendEntry {
            kind: k.name(),
            label: k.label(),
            count: counts.get(&k).copied().unwrap_or(0),
        })
        .collect();

    // Rows of the grid: a month of days, a day of hours, a year of months.
    let granularity = pipeline.partitioning.granularity();
    let (slots, label_of): (usize, fn(&chrono::NaiveDateTime) -> String) = match granularity {
        Granularity::Day => (31, |t| t.format("%Y-%m").to_string()),
        Granularity::Hour => (24, |t| t.format("%Y-%m-%d").to_string()),
        Granularity::Month => (12, |t| t.format("%Y").to_string()),
    };
    let slot_of = |t: &chrono::NaiveDateTime| match granularity {
        Granularity::Day => t.day0() as usize,
        Granularity::Hour => t.hour() as usize,
        Granularity::Month => t.month0() as usize,
    };
    let mut grid: BTreeMap<String, Vec<Option<Cell>>> = BTreeMap::new();
    for row in rows {
        let start = row.partition.date().start();
        let late = lateness.and_then(|l| l.last_change.get(&row.partition));
        grid.entry(label_of(&start))
            .or_insert_with(|| std::iter::repeat_with(|| None).take(slots).collect())
            [slot_of(&start)] = Some(cell(row, late));
    }
    // Days and months count from 1, hours from 0.
    let first = usize::from(granularity != Granularity::Hour);
    let pipeline_arg = if several {
        format!(" --pipeline {}", pipeline.name)
    } else {
        String::new()
    };
    let failed = rows
        .iter()
        .filter(|r| Kind::of(r) == Kind::Failed)
        .map(|r| {
            let (error, more) = split_error(r.last_error.as_deref().unwrap_or_default());
            Failed {
                partition: r.partition.to_string(),
                error,
                more,
                attempts: r.attempts,
                updated_at: r.updated_at.map_or(String::new(), |t| {
                    t.format("%Y-%m-%d %H:%M UTC").to_string()
                }),
                command: format!(
                    "latefill backfill{config_arg}{pipeline_arg} --from {p} --to {p}",
                    p = r.period
                ),
            }
        })
        .collect();
    Section {
        name: pipeline.name.clone(),
        source: pipeline.source.to_string(),
        target: pipeline.target.to_string(),
        legend,
        total: rows.len(),
        warned: rows
            .iter()
            .filter(|r| !r.audit_warnings().is_empty())
            .count(),
        header: (first..first + slots).collect(),
        rows: grid
            .into_iter()
            .map(|(label, cells)| GridRow { label, cells })
            .collect(),
        failed,
        lateness: lateness.map(lateness_view),
    }
}

/// An error split for the failed list: what it says, and the samples or detail
/// after it (a failed audit's offending rows), if any.
fn split_error(error: &str) -> (String, Option<String>) {
    match error.split_once("; offending rows, e.g.: ") {
        Some((head, samples)) => (
            format!("{head}."),
            Some(format!("offending rows, e.g.: {samples}")),
        ),
        None => (error.to_owned(), None),
    }
}

fn cell(row: &StatusRow, late: Option<&crate::engine::LateChange>) -> Cell {
    use std::fmt::Write;
    let kind = Kind::of(row);
    let mut tip = format!("{}\n{}", row.partition, kind.label());
    if let Some(v) = row.source_version {
        let _ = write!(tip, "\nprocessed at source version {v}");
    }
    if let Some(v) = row.last_change_version {
        let _ = write!(tip, "\nlast changed at source version {v}");
    }
    if row.stale {
        tip.push_str("\nstale: processed by another version of the transform");
    }
    if kind == Kind::Processing {
        if let Some(owner) = &row.owner {
            let _ = write!(tip, "\nowner {owner}");
        }
        if let Some(lease) = row.lease_expires_at {
            let _ = write!(
                tip,
                "\nlease until {}",
                lease.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    if let Some(run) = &row.last_run {
        let started = run["started_at"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok());
        if let Some(started) = started {
            let _ = write!(
                tip,
                "\nlast run {}",
                started.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        if let Some(ms) = run["duration_ms"].as_u64() {
            let _ = write!(tip, ", took {}", duration(ms));
        }
        if let (Some(rows_in), Some(rows_out)) =
            (run["rows_read"].as_u64(), run["rows_written"].as_u64())
        {
            let _ = write!(
                tip,
                ", {} rows in, {} out",
                thousands(rows_in),
                thousands(rows_out)
            );
        }
    }
    if let Some(updated) = row.updated_at {
        let _ = write!(tip, "\nupdated {}", updated.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    if row.attempts > 1 {
        let _ = write!(tip, "\n{} attempts", row.attempts);
    }
    for warning in row.audit_warnings() {
        let _ = write!(tip, "\naudit warning: {warning}");
    }
    if let Some(error) = &row.last_error {
        let _ = write!(tip, "\nlast error: {error}");
    }
    if let Some(late) = late {
        let _ = write!(
            tip,
            "\nlast late change: version {}, {} after its period ended",
            late.version,
            span(late.lateness_seconds)
        );
    }
    Cell {
        kind: kind.name(),
        stale: row.stale,
        warned: !row.audit_warnings().is_empty(),
        partition: row.partition.to_string(),
        tip,
    }
}

fn lateness_view(report: &LatenessReport) -> LatenessView {
    let longest = report
        .histogram
        .iter()
        .map(|b| b.changes)
        .max()
        .unwrap_or(0)
        .max(1);
    LatenessView {
        summary: format!(
            "{} of {} processed partitions received late data ({:.1}%), in {} late change{}.",
            thousands(report.late_partitions as u64),
            thousands(report.partitions as u64),
            report.late_share * 100.0,
            thousands(report.late_changes as u64),
            if report.late_changes == 1 { "" } else { "s" }
        ),
        percentiles: report.lateness_seconds.map(|d| {
            format!(
                "Lateness, from the end of the period to the commit: p50 {}, p90 {}, p99 {}, max {}.",
                span(d.p50),
                span(d.p90),
                span(d.p99),
                span(d.max)
            )
        }),
        lookback_99: report.lookback_days_99,
        lookback_100: report.lookback_days_100,
        bars: report
            .histogram
            .iter()
            .map(|b| Bar {
                label: b.label,
                changes: b.changes,
                width: b.changes * 100 / longest,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(partition: String, status: &str, late: bool) -> StatusRow {
        let days = crate::Partitioning::new("event_time", Granularity::Day);
        let partition = days.parse_name(&partition).expect("a day's partition");
        StatusRow {
            pipeline: "devices_daily".into(),
            period: partition.date().to_string(),
            partition,
            status: status.into(),
            source_version: Some(1.into()),
            last_change_version: Some(1.into()),
            late,
            stale: false,
            transform: None,
            owner: None,
            lease_expires_at: None,
            attempts: 1,
            last_error: Some("<b>boom</b> & \"quotes\"".into()),
            updated_at: None,
            last_run: None,
        }
    }

    fn page(pipeline: &Pipeline, rows: &[StatusRow]) -> String {
        let status = PipelineStatus {
            pipeline,
            rows,
            lateness: None,
        };
        render(
            &[status],
            Utc::now(),
            Some(std::path::Path::new("my pipeline.toml")),
        )
        .unwrap()
    }

    /// Ten years of days are 120 rows of 31 slots, one cell a partition.
    #[test]
    fn ten_years_of_days_are_a_row_per_month() {
        let pipeline = Pipeline::default_devices(std::path::Path::new("/x")).unwrap();
        let start = chrono::NaiveDate::from_ymd_opt(2015, 1, 1).unwrap();
        let rows: Vec<StatusRow> = (0..3_650)
            .map(|i| {
                let day = start + chrono::Days::new(i);
                row(format!("event_time={day}"), "processed", i % 100 == 0)
            })
            .collect();
        let html = page(&pipeline, &rows);
        // The header row, then a row per month from 2015-01 to 2024-12.
        assert_eq!(html.matches("<div class=\"row").count(), 1 + 120);
        assert_eq!(
            html.matches("data-kind=\"processed\" data-partition")
                .count(),
            3_613
        );
        assert_eq!(
            html.matches("data-kind=\"late\" data-partition").count(),
            37
        );
        assert!(html.contains("data-count=\"late\">37<"));
    }

    /// The layout follows the pipeline's granularity: a row per day of 24 hourly
    /// cells, a row per year of 12 monthly ones.
    #[test]
    fn hours_and_months_are_laid_out_by_day_and_by_year() {
        for (granularity, names, rows, slots) in [
            (
                Granularity::Hour,
                vec!["2024-01-01T00", "2024-01-01T23", "2024-01-02T05"],
                2,
                24,
            ),
            (
                Granularity::Month,
                vec!["2023-12", "2024-01", "2024-12"],
                2,
                12,
            ),
        ] {
            let mut pipeline = Pipeline::default_devices(std::path::Path::new("/x")).unwrap();
            pipeline.partitioning = crate::Partitioning::new("event_time", granularity);
            let rows_of: Vec<StatusRow> = names
                .iter()
                .map(|n| {
                    let partition = pipeline
                        .partitioning
                        .parse_name(&format!("event_time={n}"))
                        .unwrap();
                    StatusRow {
                        period: partition.date().to_string(),
                        partition,
                        ..row("event_time=2024-01-01".into(), "processed", false)
                    }
                })
                .collect();
            let html = page(&pipeline, &rows_of);
            assert_eq!(
                html.matches("<div class=\"row\">").count(),
                rows,
                "{granularity:?}"
            );
            let header = html.split("<div class=\"row head\">").nth(1).unwrap();
            let header = header.split("</div>").next().unwrap();
            assert_eq!(header.matches("<span class=\"cell\">").count(), slots);
            assert_eq!(html.matches("data-partition=").count(), names.len());
        }
    }

    /// What the state holds is text, never markup; a failed partition is listed with
    /// the command that reprocesses it.
    #[test]
    fn errors_and_names_are_escaped() {
        let pipeline = Pipeline::default_devices(std::path::Path::new("/x")).unwrap();
        let rows = vec![row("event_time=2024-01-01".into(), "failed", false)];
        let html = page(&pipeline, &rows);
        assert!(!html.contains("<b>boom"), "{html}");
        assert!(html.contains("&lt;b&gt;boom&lt;"), "{html}");
        assert!(html.contains("&amp; &quot;quotes&quot;"), "{html}");
        assert!(
            html.contains("latefill backfill --config &#x27;my pipeline.toml&#x27; --from 2024-01-01 --to 2024-01-01")
                || html.contains("latefill backfill --config &#39;my pipeline.toml&#39; --from 2024-01-01 --to 2024-01-01"),
            "{html}"
        );
    }
}
