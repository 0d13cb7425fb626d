//! `latefill._latefill`: the compiled core of the Python package.
//!
//! ```text
//!  latefill (Python: typed results, exceptions, Airflow, Dagster)
//!     │  JSON text of the Rust results; exceptions by exit code
//!  _latefill (this crate) ── latefill (the Rust engine and command line)
//! ```
//!
//! Every call releases the GIL while latefill works, on one Tokio runtime for the
//! process, and looks at Python's signals every 50 ms: Ctrl-C stops the work, gives
//! back the claims this call holds and raises `KeyboardInterrupt`. Results cross as
//! the JSON that `--format json` prints, which the Python side turns into dataclasses;
//! errors as `latefill.errors` exceptions, chosen by the command line's exit code for
//! them, with the command line's message.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use latefill::backfill::{Batching, Selection};
use latefill::engine::{LateHandling, RunControl};
use latefill::executor::{Pipeline, Project as ProjectFile, Session};
use latefill::{Engine as RustEngine, PartitionDate, TableVersion};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use serde::Serialize;

/// The process's runtime: every call blocks on it with the GIL released.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("latefill")
        .build()
        .expect("a Tokio runtime starts")
});

/// How often a call looks at Python's signals (Ctrl-C) while it works.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The `latefill.errors` exception for `err`: its class from the exit code the
/// command line gives it, its message the command line's.
fn to_py_err(py: Python<'_>, err: anyhow::Error) -> PyErr {
    let (code, message) = latefill::cli::describe(&err);
    let class = match code {
        latefill::cli::USAGE => "UsageError",
        latefill::cli::DATA => "DataError",
        latefill::cli::CONTENTION => "ContentionError",
        latefill::cli::INTERRUPTED => return PyKeyboardInterrupt::new_err(message),
        _ => "StorageError",
    };
    exception(py, class, message)
}

/// The `latefill.errors` exception `class` with `message`.
fn exception(py: Python<'_>, class: &str, message: String) -> PyErr {
    match py
        .import("latefill.errors")
        .and_then(|errors| errors.getattr(class))
        .and_then(|class| class.call1((message,)))
    {
        Ok(exception) => PyErr::from_value(exception),
        Err(import_failed) => import_failed,
    }
}

/// An exception raised in a callback (`on_event`), waiting for the call to see it.
type Raised = Arc<std::sync::Mutex<Option<PyErr>>>;

/// Runs `work` with the GIL released. Ctrl-C (any Python signal handler that raises),
/// or an exception a callback raised into `raised`, stops it: the claims `control`
/// holds are given back, and the exception is raised.
fn block_on<T, F>(
    py: Python<'_>,
    claims: Option<(&RustEngine, Arc<RunControl>)>,
    raised: Option<Raised>,
    work: F,
) -> PyResult<T>
where
    T: Send,
    F: Future<Output = anyhow::Result<T>> + Send,
{
    // What the call left running (a state checkpoint) ends before it returns.
    let work = async {
        let done = work.await;
        latefill::settle().await;
        done
    };
    let outcome = py.detach(|| {
        RUNTIME.block_on(async {
            let mut work = std::pin::pin!(work);
            let mut poll = tokio::time::interval(SIGNAL_POLL);
            loop {
                tokio::select! {
                    biased;
                    done = &mut work => {
                        // An exception a callback raised while the work was ending is
                        // not lost: the call raises it.
                        let in_callback = raised.as_ref().and_then(|r| r.lock().expect("not poisoned").take());
                        return match in_callback {
                            Some(error) => Err(error),
                            None => Ok(done),
                        };
                    }
                    _ = poll.tick() => {
                        let in_callback = raised.as_ref().and_then(|r| r.lock().expect("not poisoned").take());
                        let signal = match in_callback {
                            Some(error) => error,
                            None => match Python::attach(|py| py.check_signals()) {
                                Ok(()) => continue,
                                Err(signal) => signal,
                            },
                        };
                        if let Some((engine, control)) = &claims {
                            control.stop();
                            for partition in control.held() {
                                let given_back = engine
                                    .state()
                                    .release(&partition, engine.run_id(), "interrupted")
                                    .await;
                                if let Err(e) = given_back {
                                    eprintln!("latefill: could not give back the claim of {partition} ({e}); it expires with its lease");
                                }
                            }
                        }
                        return Err(signal);
                    }
                }
            }
        })
    });
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(to_py_err(py, err)),
        Err(signal) => Err(signal),
    }
}

/// `value` as JSON text.
fn json(value: &impl Serialize) -> PyResult<String> {
    serde_json::to_string(value)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

/// `value` as a period of `pipeline`, or the `UsageError` the command line gives.
fn date_of(py: Python<'_>, pipeline: &Pipeline, value: &str) -> PyResult<PartitionDate> {
    pipeline
        .parse_date(value)
        .map_err(|e| to_py_err(py, e.into()))
}

/// The pipelines of a pipeline or project file, or a directory of pipeline files.
fn load(py: Python<'_>, config: &PathBuf) -> PyResult<ProjectFile> {
    ProjectFile::from_path(config).map_err(|e| to_py_err(py, e.into()))
}

/// The engine of one pipeline: `latefill.Engine` wraps it.
#[pyclass(module = "latefill._latefill", frozen)]
struct Engine {
    engine: RustEngine,
}

#[pymethods]
impl Engine {
    /// The engine of the pipeline of `config` (a pipeline or project file, or a
    /// directory of pipeline files); `pipeline` names one of a project.
    #[new]
    #[pyo3(signature = (config, pipeline=None, run_id=None, lease_seconds=600, strategy=None, memory_limit=None))]
    fn new(
        py: Python<'_>,
        config: PathBuf,
        pipeline: Option<String>,
        run_id: Option<String>,
        lease_seconds: u32,
        strategy: Option<String>,
        memory_limit: Option<String>,
    ) -> PyResult<Self> {
        let project = load(py, &config)?;
        let names = project.names().join(", ");
        let chosen = match &pipeline {
            Some(name) => project.get(name).cloned().ok_or_else(|| {
                format!(
                    "pipeline={name:?}: {} declares no such pipeline; it declares {names}",
                    config.display()
                )
            }),
            None if project.pipelines().len() == 1 => Ok(project.pipelines()[0].clone()),
            None => Err(format!(
                "{} declares {} pipelines ({names}); choose one with pipeline=NAME, or \
                 open the whole project with latefill.Project",
                config.display(),
                project.pipelines().len()
            )),
        };
        let chosen = chosen.map_err(|message| usage_error(py, message))?;
        let chosen = with_overrides(py, chosen, strategy.as_deref(), memory_limit.as_deref())?;
        Ok(Engine {
            engine: engine_of(chosen, &Session::new(), run_id, lease_seconds),
        })
    }

    /// The pipeline's name.
    #[getter]
    fn name(&self) -> String {
        self.engine.pipeline().name.clone()
    }

    /// The run id of this engine's claims.
    #[getter]
    fn run_id(&self) -> String {
        self.engine.run_id().to_string()
    }

    /// The pipeline's granularity: `day`, `hour` or `month`.
    #[getter]
    fn granularity(&self) -> &'static str {
        self.engine.pipeline().partitioning.granularity().as_str()
    }

    /// The period `date` names, as the pipeline writes it (`2024-01-03`).
    fn period(&self, py: Python<'_>, date: &str) -> PyResult<String> {
        Ok(date_of(py, self.engine.pipeline(), date)?.to_string())
    }

    /// `run --date`: the date, then what is late before it. JSON of a `RunOutcome`.
    #[pyo3(signature = (date, lookback=None, late="backfill", plan_file=None, allow_empty=false, source_version=None))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each
    fn run_date(
        &self,
        py: Python<'_>,
        date: &str,
        lookback: Option<u32>,
        late: &str,
        plan_file: Option<PathBuf>,
        allow_empty: bool,
        source_version: Option<u64>,
    ) -> PyResult<String> {
        let date = date_of(py, self.engine.pipeline(), date)?;
        let handling = match (late, plan_file) {
            (_, Some(path)) => LateHandling::PlanFile(path),
            ("backfill", None) => LateHandling::InProcess,
            ("report", None) => LateHandling::ReportOnly,
            (other, None) => {
                return Err(usage_error(
                    py,
                    format!("late={other:?}: expected \"backfill\" or \"report\""),
                ));
            }
        };
        let control = Arc::new(RunControl::default());
        let mut run = self
            .engine
            .run_date(date)
            .with_late(handling)
            .with_lookback_days(lookback)
            .with_allow_empty(allow_empty)
            .with_control(control.clone());
        if let Some(version) = source_version {
            run = run.with_source_version(TableVersion::new(version));
        }
        let outcome = block_on(py, Some((&self.engine, control)), None, async {
            Ok(run.await?)
        })?;
        json(&outcome)
    }

    /// Detection and planning before `date`, committing nothing but the cursor. JSON
    /// of a `Detection`.
    #[pyo3(signature = (date, lookback=None))]
    fn detect(&self, py: Python<'_>, date: &str, lookback: Option<u32>) -> PyResult<String> {
        let date = date_of(py, self.engine.pipeline(), date)?;
        let detect = self.engine.detect(date).with_lookback_days(lookback);
        let detection = block_on(py, None, None, async { Ok(detect.await?) })?;
        json(&detection)
    }

    /// A backfill of `start..=end`. JSON of a `BackfillReport`; `on_event` is called
    /// with each event's JSON as it happens.
    #[pyo3(signature = (start, end, concurrency=1, selection="pending", on_event=None, batch_size=8))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each
    fn backfill(
        &self,
        py: Python<'_>,
        start: &str,
        end: &str,
        concurrency: usize,
        selection: &str,
        on_event: Option<Py<PyAny>>,
        batch_size: usize,
    ) -> PyResult<String> {
        let pipeline = self.engine.pipeline();
        let (start, end) = (date_of(py, pipeline, start)?, date_of(py, pipeline, end)?);
        if start > end {
            return Err(usage_error(
                py,
                format!("start {start} is after end {end}: nothing to backfill"),
            ));
        }
        if concurrency == 0 {
            return Err(usage_error(py, "concurrency=0: at least 1".to_owned()));
        }
        if batch_size == 0 {
            return Err(usage_error(
                py,
                "batch_size=0: at least 1 (1 makes a state commit per transition)".to_owned(),
            ));
        }
        let selection = match selection {
            "pending" => Selection::Pending,
            "late" => Selection::OnlyLate,
            "stale" => Selection::Stale,
            "all" => Selection::All,
            other => {
                return Err(usage_error(
                    py,
                    format!(
                        "selection={other:?}: expected \"pending\", \"late\", \"stale\" or \"all\""
                    ),
                ));
            }
        };
        let control = Arc::new(RunControl::default());
        let mut run = self
            .engine
            .backfill(start, end)
            .with_concurrency(concurrency)
            .with_batching(Batching {
                size: batch_size,
                ..Batching::default()
            })
            .with_selection(selection)
            .with_control(control.clone());
        let raised = Raised::default();
        if let Some(callback) = on_event {
            let raised = raised.clone();
            run = run.with_listener(move |event| {
                let Ok(text) = serde_json::to_string(event) else {
                    return;
                };
                Python::attach(|py| {
                    // An exception in the callback (a KeyboardInterrupt that arrived
                    // while it ran, say) stops the backfill and is raised by the call.
                    if let Err(e) = callback.call1(py, (text,)) {
                        raised.lock().expect("not poisoned").get_or_insert(e);
                    }
                });
            });
        }
        let report = block_on(py, Some((&self.engine, control)), Some(raised), async {
            Ok(run.into_future().await?)
        })?;
        json(&report)
    }

    /// Every partition of the state table and of the source. JSON of `StatusRow`s.
    fn status(&self, py: Python<'_>) -> PyResult<String> {
        let engine = self.engine.clone();
        let rows = block_on(py, None, None, async move { Ok(engine.status().await?) })?;
        json(&rows)
    }

    /// How late the pipeline's data arrives, for the partitions of `start..=end`
    /// (`latefill lateness`). JSON of a `LatenessReport`.
    #[pyo3(signature = (start=None, end=None))]
    fn lateness(&self, py: Python<'_>, start: Option<&str>, end: Option<&str>) -> PyResult<String> {
        let pipeline = self.engine.pipeline();
        let from = start.map(|d| date_of(py, pipeline, d)).transpose()?;
        let to = end.map(|d| date_of(py, pipeline, d)).transpose()?;
        let engine = self.engine.clone();
        let report = block_on(py, None, None, async move {
            Ok(engine.lateness(from, to).await?)
        })?;
        json(&report)
    }
}

/// The engine of `pipeline` in `session`, as the command line makes it.
fn engine_of(
    pipeline: Pipeline,
    session: &Session,
    run_id: Option<String>,
    lease_seconds: u32,
) -> RustEngine {
    let mut engine = RustEngine::new(pipeline)
        .with_lease(chrono::Duration::seconds(i64::from(lease_seconds)))
        .with_session(session.clone());
    if let Some(id) = run_id {
        engine = engine.with_run_id(id);
    }
    engine
}

/// A `latefill.errors.UsageError` with `message`.
fn usage_error(py: Python<'_>, message: String) -> PyErr {
    exception(py, "UsageError", message)
}

/// The pipelines of a project file, upstream first, each with the pipeline it reads
/// from (its upstream) or `None`: `latefill.Project` runs them in this order.
#[pyfunction]
fn project_order(py: Python<'_>, config: PathBuf) -> PyResult<Vec<(String, Option<String>)>> {
    let project = load(py, &config)?;
    Ok(project
        .pipelines()
        .iter()
        .map(|p| {
            let upstream = project.upstream_of(p).map(|u| u.name.clone());
            (p.name.clone(), upstream)
        })
        .collect())
}

/// The engines of every pipeline of a project file, sharing one session (what an
/// upstream pipeline writes, its downstream advances instead of reading afresh).
#[pyfunction]
#[pyo3(signature = (config, run_id=None, lease_seconds=600, strategy=None, memory_limit=None))]
fn project_engines(
    py: Python<'_>,
    config: PathBuf,
    run_id: Option<String>,
    lease_seconds: u32,
    strategy: Option<String>,
    memory_limit: Option<String>,
) -> PyResult<Vec<Engine>> {
    let project = load(py, &config)?;
    let session = Session::new();
    project
        .pipelines()
        .iter()
        .map(|p| {
            let pipeline =
                with_overrides(py, p.clone(), strategy.as_deref(), memory_limit.as_deref())?;
            Ok(Engine {
                engine: engine_of(pipeline, &session, run_id.clone(), lease_seconds),
            })
        })
        .collect()
}

/// `pipeline` with the strategy `strategy=` names (`auto`, `replace`, `incremental`)
/// and the limit `memory_limit=` gives (`"512MB"`, or bytes), if any, as the
/// command's `--strategy` and `--memory-limit`; another value is a `UsageError`.
fn with_overrides(
    py: Python<'_>,
    mut pipeline: Pipeline,
    strategy: Option<&str>,
    memory_limit: Option<&str>,
) -> PyResult<Pipeline> {
    if let Some(name) = strategy {
        pipeline.strategy = name
            .parse()
            .map_err(|reason: String| usage_error(py, format!("strategy={name:?}: {reason}")))?;
    }
    if let Some(text) = memory_limit {
        let bytes = latefill::executor::parse_memory_limit(text)
            .map_err(|reason| usage_error(py, format!("memory_limit={text:?}: {reason}")))?;
        pipeline.memory_limit = Some(bytes);
    }
    Ok(pipeline)
}

/// `latefill changes`: the source's partitions and their last change. JSON of the
/// detector's `Changes`.
#[pyfunction]
#[pyo3(signature = (table, since_version=None))]
fn changes(py: Python<'_>, table: &str, since_version: Option<u64>) -> PyResult<String> {
    let url = latefill::executor::resolve_location("source", table, std::path::Path::new("."))
        .map_err(|e| to_py_err(py, e.into()))?;
    let detect = latefill::detector::detect_changes(&url)
        .with_since_version(since_version.map(TableVersion::new));
    let changes = block_on(py, None, None, async { Ok(detect.await?) })?;
    json(&changes)
}

/// The `latefill` command line on `args` (the program's name first); returns its exit
/// code. The package's `latefill` command is this.
#[pyfunction]
fn main(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| latefill::cli::main(args))
}

/// The compiled core of the `latefill` package.
#[pymodule]
fn _latefill(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Engine>()?;
    module.add_function(wrap_pyfunction!(project_order, module)?)?;
    module.add_function(wrap_pyfunction!(project_engines, module)?)?;
    module.add_function(wrap_pyfunction!(changes, module)?)?;
    module.add_function(wrap_pyfunction!(main, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
