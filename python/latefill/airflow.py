"""latefill in Airflow 3: the late-data pattern as a task group.

::

    latefill_group = late_data_task_group(config="{{ var.value.latefill_config }}")

    ┌ latefill ────────────────────────────────────────────────────────────────┐
    │ run: the data interval's partition, then claims the late partitions     │
    │   └─► reprocess[0], reprocess[1], ...: one mapped task a late partition, │
    │       each taking its claim over (its own logs, retries and duration)    │
    └──────────────────────────────────────────────────────────────────────────┘

- The partition processed is the data interval that ended: ``data_interval_start``
  when the run has an interval (``CronDataIntervalTimetable``), else the period
  before ``data_interval_end`` (a trigger timetable such as Airflow 3's ``@daily``,
  whose runs have no interval).
- Retries only where they can help: ``ContentionError`` and ``StorageError`` go
  through the task's retries; ``UsageError`` and ``DataError`` fail at once
  (``AirflowFailException``). Either way the report goes to XCom: ``run`` pushes the
  day's ``RunOutcome`` as ``report`` and returns the hand-outs its mapped tasks take
  (``{"period", "claimed_by"}``); each ``reprocess`` returns its partition's
  ``RunReport``; a failure pushes ``latefill_error`` (kind, exit code, message).
- Nothing is a constant: the pipeline file comes from the arguments, which are
  templated (a Variable: ``{{ var.value.latefill_config }}``, a param, a
  connection's extra).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

from airflow.sdk import get_current_context, task, task_group

try:  # Airflow 3's task SDK
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # pragma: no cover - older layouts
    from airflow.exceptions import AirflowFailException

from . import Engine, LatefillError
from .engine import _period


def period_of(context: Dict[str, Any], granularity: str) -> str:
    """The period that the run's data interval ended, as ``run_date`` takes it."""
    start = context.get("data_interval_start")
    end = context.get("data_interval_end") or context.get("logical_date")
    if start is not None and end is not None and end > start:
        moment: datetime = start
    elif end is not None:
        moment = end - timedelta(microseconds=1)
    else:
        raise AirflowFailException("the run has neither a data interval nor a logical date")
    return _period(moment, granularity)


def _fail(context: Dict[str, Any], error: LatefillError) -> None:
    """Pushes ``error`` to XCom and raises what makes Airflow retry it or not."""
    kind = type(error).__name__
    context["ti"].xcom_push(
        key="latefill_error",
        value={"kind": kind, "exit_code": error.exit_code, "message": str(error)},
    )
    if error.retryable:
        raise error
    raise AirflowFailException(f"{kind} (exit {error.exit_code}): {error}") from error


def late_data_task_group(
    config: str,
    *,
    pipeline: Optional[str] = None,
    lookback: Optional[int] = None,
    group_id: str = "latefill",
    retries: int = 3,
    retry_delay: timedelta = timedelta(minutes=2),
    plan_dir: Optional[str] = None,
) -> Any:
    """The task group of one pipeline: ``run`` processes the data interval's
    partition and claims the late ones; ``reprocess`` is mapped over them, each
    instance taking one claim over. Returns the group (use it in ``>>``).

    ``config``, ``pipeline`` and ``lookback`` are templated. ``plan_dir`` is where the
    hand-off's plan file is written for the moment it takes (default: the system's
    temporary directory).
    """

    @task(task_id="run", retries=retries, retry_delay=retry_delay)
    def run(config: str, pipeline: Optional[str], lookback: Optional[Any]) -> List[Dict[str, str]]:
        context = get_current_context()
        try:
            engine = Engine(config, pipeline or None)
            period = period_of(context, engine.granularity)
            plan = os.path.join(
                plan_dir or tempfile.gettempdir(),
                f"latefill-plan-{engine.name}-{engine.run_id}.json",
            )
            outcome = engine.run_date(
                period,
                lookback=int(lookback) if lookback not in (None, "", "None") else None,
                plan_file=plan,
            )
        except LatefillError as error:
            _fail(context, error)
            raise  # unreachable: _fail raises
        context["ti"].xcom_push(key="report", value=outcome.to_dict())
        try:
            with open(plan) as f:
                handed_out: List[str] = json.load(f)["periods"]
        finally:
            if os.path.exists(plan):
                os.remove(plan)
        # What the mapped reprocess tasks take: one late partition each, and the run
        # whose claims they take over.
        return [{"period": period, "claimed_by": engine.run_id} for period in handed_out]

    @task(task_id="reprocess", retries=retries, retry_delay=retry_delay)
    def reprocess(
        period: str, claimed_by: str, config: str, pipeline: Optional[str]
    ) -> Dict[str, Any]:
        context = get_current_context()
        try:
            engine = Engine(config, pipeline or None, run_id=claimed_by)
            outcome = engine.run_date(period, late="report")
        except LatefillError as error:
            _fail(context, error)
            raise
        return outcome.run.to_dict()

    @task_group(group_id=group_id)
    def latefill_group() -> None:
        handed_out = run(config, pipeline, lookback)
        reprocess.partial(config=config, pipeline=pipeline).expand_kwargs(handed_out)

    return latefill_group()
