//! `latefill status --format html`: the partitions of each pipeline as a grid of
//! coloured cells, in one self-contained HTML file (no network, no external script,
//! style or font).
//!
//! A row holds a month of daily partitions (a day of hourly ones, a year of monthly
//! ones), so ten years of days are 120 rows of 31 cells. Each cell is coloured by its
//! kind ([`Kind`]) and says the rest in its tooltip: versions, owner and lease, the
//! last error.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Datelike, Timelike, Utc};
use latefill_core::Granularity;
use latefill_executor::Pipeline;

use crate::engine::StatusRow;

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

/// The page for `pipelines`, each with its status rows, as of `now`.
pub fn render(pipelines: &[(Pipeline, Vec<StatusRow>)], now: DateTime<Utc>) -> String {
    let mut html = String::new();
    let title = match pipelines {
        [(p, _)] => format!("latefill status: {}", p.name),
        _ => "latefill status".to_owned(),
    };
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<h1>{}</h1>\n\
         <p class=\"when\">As of {} UTC. Hover a cell for its details; click a legend entry \
         to show only that kind.</p>\n",
        escape(&title),
        style(),
        escape(&title),
        now.format("%Y-%m-%d %H:%M:%S")
    );
    for (pipeline, rows) in pipelines {
        section(&mut html, pipeline, rows);
    }
    let _ = writeln!(html, "<script>{SCRIPT}</script>\n</body>\n</html>");
    html
}

fn section(html: &mut String, pipeline: &Pipeline, rows: &[StatusRow]) {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for row in rows {
        *counts.entry(Kind::of(row)).or_default() += 1;
    }
    let _ = write!(
        html,
        "<section class=\"pipeline\" data-pipeline=\"{name}\">\n<h2>{name}</h2>\n\
         <p class=\"tables\">{source} &rarr; {target}</p>\n<ul class=\"legend\">",
        name = escape(&pipeline.name),
        source = escape(pipeline.source.as_str()),
        target = escape(pipeline.target.as_str()),
    );
    for kind in Kind::ALL {
        let _ = write!(
            html,
            "<li data-kind=\"{k}\"><span class=\"swatch {k}\"></span>{label}: \
             <span class=\"count\" data-count=\"{k}\">{n}</span></li>",
            k = kind.name(),
            label = kind.label(),
            n = counts.get(&kind).copied().unwrap_or(0),
        );
    }
    let _ = writeln!(
        html,
        "<li class=\"total\">partitions: <span class=\"count\" data-count=\"all\">{}</span></li></ul>",
        rows.len()
    );

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
    let mut grid: BTreeMap<String, Vec<Option<&StatusRow>>> = BTreeMap::new();
    for row in rows {
        let start = row.partition.date().start();
        grid.entry(label_of(&start))
            .or_insert_with(|| vec![None; slots])[slot_of(&start)] = Some(row);
    }
    html.push_str("<div class=\"grid\">\n<div class=\"row head\"><span class=\"label\"></span>");
    for slot in 0..slots {
        // Days and months count from 1, hours from 0.
        let number = if granularity == Granularity::Hour {
            slot
        } else {
            slot + 1
        };
        let _ = write!(html, "<span class=\"cell\">{number}</span>");
    }
    html.push_str("</div>\n");
    for (label, cells) in &grid {
        let _ = write!(
            html,
            "<div class=\"row\"><span class=\"label\">{label}</span>"
        );
        for cell in cells {
            match cell {
                Some(row) => cell_html(html, row),
                None => html.push_str("<span class=\"cell empty\"></span>"),
            }
        }
        html.push_str("</div>\n");
    }
    html.push_str("</div>\n</section>\n");
}

fn cell_html(html: &mut String, row: &StatusRow) {
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
    if let Some(error) = &row.last_error {
        let _ = write!(tip, "\nlast error: {error}");
    }
    let _ = write!(
        html,
        "<span class=\"cell {k}{stale}\" data-kind=\"{k}\" data-partition=\"{p}\" title=\"{t}\"></span>",
        k = kind.name(),
        stale = if row.stale { " stale" } else { "" },
        p = escape(row.partition.as_str()),
        t = escape(&tip),
    );
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}

fn style() -> String {
    let mut css = String::from(
        "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d232b}\
         h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 2px}\
         .when,.tables{color:#5b6470;margin:0 0 8px}\
         .legend{list-style:none;padding:0;margin:8px 0;display:flex;flex-wrap:wrap;gap:6px 16px}\
         .legend li{cursor:pointer;user-select:none}.legend li.total{cursor:default;color:#5b6470}\
         .legend li.off{opacity:.35}\
         .swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}\
         .grid{display:flex;flex-direction:column;gap:2px}\
         .row{display:flex;gap:2px;align-items:center}\
         .label{width:88px;flex:none;color:#5b6470;font:12px ui-monospace,monospace}\
         .cell{width:12px;height:12px;border-radius:2px;flex:none}\
         .cell.empty{background:transparent}\
         .head .cell{font:9px ui-monospace,monospace;color:#8a929c;text-align:center;line-height:12px}\
         .cell.stale{outline:2px dashed #6b4fbb;outline-offset:-2px}\
         .cell.dim{opacity:.12}",
    );
    for kind in Kind::ALL {
        let _ = write!(
            css,
            ".{k}{{background:{c}}}",
            k = kind.name(),
            c = kind.colour()
        );
    }
    css
}

/// Clicking a legend entry shows only that kind of cell; clicking it again shows all.
const SCRIPT: &str = r#"
document.querySelectorAll('section.pipeline').forEach(function (section) {
  var entries = section.querySelectorAll('.legend li[data-kind]');
  entries.forEach(function (entry) {
    entry.addEventListener('click', function () {
      var kind = entry.getAttribute('data-kind');
      var only = !entry.classList.contains('only');
      entries.forEach(function (e) {
        e.classList.remove('only');
        e.classList.toggle('off', only && e !== entry);
      });
      if (only) { entry.classList.add('only'); }
      section.querySelectorAll('.cell[data-kind]').forEach(function (cell) {
        cell.classList.toggle('dim', only && cell.getAttribute('data-kind') !== kind);
      });
    });
  });
});
"#;

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
        let html = render(&[(pipeline, rows)], Utc::now());
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

    /// What the state holds is text, never markup.
    #[test]
    fn errors_and_names_are_escaped() {
        let pipeline = Pipeline::default_devices(std::path::Path::new("/x")).unwrap();
        let rows = vec![row("event_time=2024-01-01".into(), "failed", false)];
        let html = render(&[(pipeline, rows)], Utc::now());
        assert!(!html.contains("<b>boom"), "{html}");
        assert!(html.contains("&lt;b&gt;boom&lt;/b&gt; &amp; &quot;quotes&quot;"));
    }
}
