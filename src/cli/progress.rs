//! A backfill as it goes: a progress bar on a terminal, a line an event otherwise,
//! or JSON lines for machines.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::backfill::BackfillEvent;
use crate::cli::args::Output;
use crate::cli::render::{audit_warnings, describe_run, emit_line};

/// Prints a backfill's events ([`Printer::print`] is its listener).
#[derive(Debug)]
pub(crate) struct Printer {
    pipeline: String,
    output: Output,
    /// On a terminal, for text output.
    bar: Option<ProgressBar>,
    rows: AtomicU64,
}

impl Printer {
    pub(crate) fn new(pipeline: String, output: Output) -> Self {
        let bar = (output == Output::Text && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed:>4} {bar:30} {human_pos}/{human_len} partitions  {msg}  \
                     {rate}  ETA {eta}",
                )
                .expect("a valid template")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1} partitions/s", state.per_sec());
                    },
                ),
            );
            bar
        });
        Printer {
            pipeline,
            output,
            bar,
            rows: AtomicU64::new(0),
        }
    }

    /// The progress bar, if there is one: to finish or abandon at the end.
    pub(crate) fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    pub(crate) fn print(&self, event: &BackfillEvent) {
        match event {
            BackfillEvent::Planned { partitions } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(partitions.len() as u64);
                }
            }
            BackfillEvent::Processed(r) => {
                self.rows.fetch_add(r.rows_read, Ordering::Relaxed);
            }
            _ => {}
        }
        match (&self.bar, self.output) {
            (_, Output::Json) => {
                let mut json = serde_json::to_value(event).expect("events serialise");
                json["pipeline"] = self.pipeline.as_str().into();
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
                bar.set_message(format!(
                    "{} rows read",
                    thousands(self.rows.load(Ordering::Relaxed))
                ));
                match event {
                    BackfillEvent::Failed(f) => {
                        bar.println(format!("FAILED {}: {}", f.partition, f.reason));
                    }
                    BackfillEvent::Processed(r) => {
                        for line in audit_warnings(r) {
                            bar.println(format!("{}{line}", r.partition));
                        }
                    }
                    _ => {}
                }
            }
            (None, Output::Text) => match event {
                BackfillEvent::Processed(r) => {
                    emit_line(&describe_run(r));
                    for line in audit_warnings(r) {
                        emit_line(&line);
                    }
                }
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
}

/// `n` with thousands separators: `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration for people: `850 ms`, `12.4 s`, `3 min 05 s`, `2 h 03 min`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1_000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// A span of time for people, coarser than [`duration`]: `45 s`, `12 min`,
/// `5 h 03 min`, `2 d 04 h`.
pub(crate) fn span(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min", seconds / 60),
        3_600..86_400 => format!("{} h {:02} min", seconds / 3_600, seconds / 60 % 60),
        _ => format!("{} d {:02} h", seconds / 86_400, seconds / 3_600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, span, thousands};

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(45), "45 s");
        assert_eq!(span(12 * 60 + 5), "12 min");
        assert_eq!(span(5 * 3_600 + 3 * 60), "5 h 03 min");
        assert_eq!(span(2 * 86_400 + 4 * 3_600 + 59), "2 d 04 h");
    }

    #[test]
    fn numbers_and_durations_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_400), "12.4 s");
        assert_eq!(duration(185_000), "3 min 05 s");
        assert_eq!(duration(7_380_000), "2 h 03 min");
    }
}
