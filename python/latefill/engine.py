"""The engine of a pipeline, and of a project of pipelines.

Every call runs latefill's Rust engine with the GIL released; Ctrl-C stops it, gives
back the claims it holds and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from typing import Any, Callable, Dict, List, Literal, Optional, Union

from . import _latefill
from .errors import LatefillError
from .results import (
    BackfillEvent,
    BackfillReport,
    Changes,
    Detection,
    RunOutcome,
    StatusRow,
)

Period = Union[str, date, datetime]
"""A period: ``"2024-01-03"`` (or ``"2024-01-03T05"``, ``"2024-01"`` for hourly and
monthly pipelines), a partition name (``"event_time=2024-01-03"``), or a ``date`` /
``datetime``."""

Selection = Literal["pending", "late", "stale", "all"]


def _size(value: Union[str, int, None]) -> Optional[str]:
    """A memory size as the core reads it: ``"512MB"`` as is, an int as bytes."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"memory_limit={value!r}: give a size such as \"512MB\" or a number of bytes")
    return str(value)


def _period(value: Period, granularity: str) -> str:
    if isinstance(value, datetime):
        return {
            "hour": value.strftime("%Y-%m-%dT%H"),
            "month": value.strftime("%Y-%m"),
        }.get(granularity, value.date().isoformat())
    if isinstance(value, date):
        return value.strftime("%Y-%m") if granularity == "month" else value.isoformat()
    return str(value)


class Engine:
    """The engine of one pipeline.

    >>> engine = latefill.Engine("latefill.toml")            # doctest: +SKIP
    >>> outcome = engine.run_date("2024-01-08")               # doctest: +SKIP
    >>> [p.partition for p in outcome.backfilled]             # doctest: +SKIP
    ['event_time=2024-01-02']

    ``config`` is a pipeline file, a project file, or a directory of pipeline files;
    ``pipeline`` names one pipeline of a project. ``run_id`` takes over claims made
    for it (by ``run_date(..., plan_file=...)`` or ``latefill run
    --backfill-config``); ``lease_seconds`` is how long this engine's claims hold
    before another run may take them over. ``strategy`` overrides the pipeline's
    ``transform.strategy`` for late partitions: ``"auto"`` (updated from their late
    rows where that is safe and cheaper), ``"replace"`` (always recomputed) or
    ``"incremental"`` (updated wherever safe); each ``RunReport.strategy`` says which
    was used. ``memory_limit`` (``"512MB"``, or a number of bytes) overrides
    ``transform.memory_limit``: the most a transform holds at once, spilling to
    ``TMPDIR`` beyond it; each ``RunReport.memory_peak`` says what it held.
    """

    def __init__(
        self,
        config: Union[str, os.PathLike],
        pipeline: Optional[str] = None,
        *,
        run_id: Optional[str] = None,
        lease_seconds: int = 600,
        strategy: Optional[str] = None,
        memory_limit: Union[str, int, None] = None,
    ) -> None:
        self._core = _latefill.Engine(
            os.fspath(config), pipeline, run_id, lease_seconds, strategy, _size(memory_limit)
        )

    @classmethod
    def _wrap(cls, core: Any) -> "Engine":
        engine = cls.__new__(cls)
        engine._core = core
        return engine

    def __repr__(self) -> str:
        return f"Engine(pipeline={self.name!r}, run_id={self.run_id!r})"

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self._core.name

    @property
    def run_id(self) -> str:
        """The run id of this engine's claims."""
        return self._core.run_id

    @property
    def granularity(self) -> str:
        """``day``, ``hour`` or ``month``."""
        return self._core.granularity

    def period(self, value: Period) -> str:
        """The period ``value`` names, as the pipeline writes it; raises
        ``UsageError`` for a value that is not one of its periods."""
        return self._core.period(_period(value, self.granularity))

    def run_date(
        self,
        date: Period,
        *,
        lookback: Optional[int] = None,
        late: Literal["backfill", "report"] = "backfill",
        plan_file: Optional[Union[str, os.PathLike]] = None,
        allow_empty: bool = False,
        source_version: Optional[int] = None,
    ) -> RunOutcome:
        """Processes ``date``, then the late partitions before it (``latefill run``).

        ``late="report"`` only reports them; ``plan_file`` claims them for this
        engine's ``run_id`` and writes the plan there for a scheduler, each to be
        taken over by an ``Engine(..., run_id=...)`` (Airflow's mapped tasks).
        ``lookback`` limits how many days back late partitions are looked for.
        """
        text = self._core.run_date(
            _period(date, self.granularity),
            lookback,
            late,
            None if plan_file is None else os.fspath(plan_file),
            allow_empty,
            source_version,
        )
        return RunOutcome.from_dict(json.loads(text))

    def detect(self, date: Period, *, lookback: Optional[int] = None) -> Detection:
        """The late and stale partitions before ``date``, processing nothing
        (``latefill detect``)."""
        text = self._core.detect(_period(date, self.granularity), lookback)
        return Detection.from_dict(json.loads(text))

    def backfill(
        self,
        start: Period,
        end: Period,
        *,
        concurrency: int = 1,
        selection: Selection = "pending",
        on_event: Optional[Callable[[BackfillEvent], None]] = None,
        batch_size: int = 8,
    ) -> BackfillReport:
        """Processes the partitions of ``start..=end`` (``latefill backfill``),
        ``concurrency`` at a time. On an object store more than the cores pay: the
        runs that finish together share one target commit (a fleet's workers: 8 to
        16).

        ``batch_size``: partitions claimed per state commit, and processed partitions
        recorded per commit (``--batch-size``; 1 makes a commit per transition).

        ``selection``: ``pending`` (not up to date: never processed, failed, late),
        ``late`` (only late), ``stale`` (processed by another version of the
        transform) or ``all``. ``on_event`` is called with each step as it happens.
        """
        callback = None
        if on_event is not None:

            def callback(text: str) -> None:
                on_event(BackfillEvent.from_dict(json.loads(text)))

        text = self._core.backfill(
            _period(start, self.granularity),
            _period(end, self.granularity),
            concurrency,
            selection,
            callback,
            batch_size,
        )
        return BackfillReport.from_dict(json.loads(text))

    def status(self, *, as_arrow: bool = False) -> Union[List[StatusRow], Any]:
        """Every partition of the state table and of the source, with its status and
        whether it is late (``latefill status``). ``as_arrow=True`` returns a
        ``pyarrow.Table`` (``pip install latefill[arrow]``)."""
        rows = [StatusRow.from_dict(r) for r in json.loads(self._core.status())]
        if not as_arrow:
            return rows
        import pyarrow as pa

        schema = pa.schema(
            [
                ("pipeline", pa.string()),
                ("partition", pa.string()),
                ("period", pa.string()),
                ("status", pa.string()),
                ("source_version", pa.int64()),
                ("last_change_version", pa.int64()),
                ("late", pa.bool_()),
                ("stale", pa.bool_()),
                ("transform", pa.string()),
                ("owner", pa.string()),
                ("lease_expires_at", pa.timestamp("us", tz="UTC")),
                ("attempts", pa.int64()),
                ("last_error", pa.string()),
            ]
        )
        columns: Dict[str, list] = {name: [] for name in schema.names}
        for row in rows:
            for name in schema.names:
                columns[name].append(getattr(row, name))
        return pa.table(columns, schema=schema)

    def lateness(
        self,
        start: Union[str, date, None] = None,
        end: Union[str, date, None] = None,
    ) -> Dict[str, Any]:
        """How late the pipeline's data arrives (``latefill lateness``), for the
        partitions of ``start..end`` (all when unset): ``late_share``,
        ``lateness_seconds`` and ``runs_later`` (``p50``, ``p90``, ``p99``, ``max``),
        ``lookback_days_99`` and ``lookback_days_100``, ``slowest`` and ``coverage``,
        as ``latefill lateness --format json`` prints them."""
        start_text = None if start is None else str(start)
        end_text = None if end is None else str(end)
        return json.loads(self._core.lateness(start_text, end_text))


class Project:
    """Every pipeline of a project file, upstream before downstream.

    ``run_date`` runs the date of each pipeline in that order (what an upstream
    pipeline rewrote is late data of its downstream one, reprocessed in the same
    call); a pipeline whose upstream failed is not run.
    """

    def __init__(
        self,
        config: Union[str, os.PathLike],
        *,
        run_id: Optional[str] = None,
        lease_seconds: int = 600,
        strategy: Optional[str] = None,
        memory_limit: Union[str, int, None] = None,
    ) -> None:
        path = os.fspath(config)
        self._order = _latefill.project_order(path)
        engines = _latefill.project_engines(
            path, run_id, lease_seconds, strategy, _size(memory_limit)
        )
        self._engines = {e.name: Engine._wrap(e) for e in engines}

    @property
    def pipelines(self) -> List[str]:
        """The pipelines' names, upstream first."""
        return [name for name, _ in self._order]

    def upstream(self, pipeline: str) -> Optional[str]:
        """The pipeline ``pipeline`` reads from, if it is one of the project's."""
        return dict(self._order)[pipeline]

    def engine(self, pipeline: str) -> Engine:
        """The engine of one pipeline (they share what they keep between calls)."""
        return self._engines[pipeline]

    def run_date(self, date: Period, **options: Any) -> Dict[str, Union[RunOutcome, LatefillError, str]]:
        """``Engine.run_date`` of every pipeline, upstream first. Returns, by pipeline,
        its outcome, the ``LatefillError`` it failed with, or why it was not run."""
        results: Dict[str, Union[RunOutcome, LatefillError, str]] = {}
        failed: set = set()
        for name, upstream in self._order:
            if upstream is not None and upstream in failed:
                failed.add(name)
                results[name] = f"not run: its upstream pipeline {upstream} failed"
                continue
            try:
                results[name] = self._engines[name].run_date(date, **options)
            except LatefillError as error:
                failed.add(name)
                results[name] = error
        return results

    def status(self) -> List[StatusRow]:
        """Every pipeline's status rows, upstream first."""
        return [row for name in self.pipelines for row in self._engines[name].status()]


def changes(table: Union[str, os.PathLike], *, since_version: Optional[int] = None) -> Changes:
    """A Delta table's partitions and the last version their data changed at
    (``latefill changes``); ``since_version`` keeps only later changes."""
    return Changes.from_dict(json.loads(_latefill.changes(os.fspath(table), since_version)))
