//! A backfill as it goes: a progress bar on a terminal, a line an event otherwise,
//! or JSON lines for machines.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::backfill::BackfillEvent;
use crate::cli::args::Output;
use crate::cli::render::{describe_run, emit_line};

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
                    "{bar:30} {pos}/{len} partitions  {msg}  {per_sec}  ETA {eta}",
                )
                .expect("a valid template"),
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
                bar.set_message(format!("{} rows", self.rows.load(Ordering::Relaxed)));
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
}
