"""latefill in Dagster: partitioned assets for a project's pipelines, and a sensor
that turns late data into runs.

::

    defs = latefill.dagster.definitions("project.toml", start_date="2024-01-01")

- One asset per pipeline, named after it, partitioned by day, hour or month as its
  pipeline file says; a pipeline that reads another's target depends on its asset.
- Materializing a partition runs latefill for it (``run_date(..., late="report")``)
  and records the rows read and written, the source version and the transform's
  version as metadata.
- The sensor reads each pipeline's state and source log (``Engine.status``) and
  requests one run per late partition, tagged with why it is late; its run key holds
  the source version of the change, so a change is requested once and a newer one
  again. Late data shows up in Dagster's UI as runs with a reason, without a
  scheduled lookback.
"""


import os
import re
from typing import Any, Dict, List, Optional, Sequence, Union

import dagster as dg

from . import Engine, LatefillError, Project
from .engine import _period

_PARTITIONS = {
    "day": dg.DailyPartitionsDefinition,
    "hour": dg.HourlyPartitionsDefinition,
    "month": dg.MonthlyPartitionsDefinition,
}


def partitions_def(granularity: str, start_date: str) -> dg.TimeWindowPartitionsDefinition:
    """Dagster's partitions for a pipeline of ``granularity`` (day, hour, month)."""
    return _PARTITIONS[granularity](start_date=start_date)


def period_of_key(partitions: dg.TimeWindowPartitionsDefinition, key: str, granularity: str) -> str:
    """The latefill period of a Dagster partition key."""
    start = partitions.time_window_for_partition_key(key).start
    return _period(start, granularity)


def key_of_period(partitions: dg.TimeWindowPartitionsDefinition, period: str) -> str:
    """The Dagster partition key of a latefill period (``2024-01-03``,
    ``2024-01-03T05``, ``2024-01``)."""
    from datetime import datetime

    for fmt in ("%Y-%m-%dT%H", "%Y-%m-%d", "%Y-%m"):
        try:
            moment = datetime.strptime(period, fmt)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"not a latefill period: {period!r}")
    return partitions.get_partition_key_for_timestamp(moment.timestamp())


def asset_name(pipeline: str) -> str:
    """The asset of a pipeline: its name, with what Dagster refuses in names as ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", pipeline)


def _asset(config: str, name: str, upstream: Optional[str], partitions: Any) -> dg.AssetsDefinition:
    @dg.asset(
        name=asset_name(name),
        partitions_def=partitions,
        deps=[dg.AssetKey(asset_name(upstream))] if upstream else [],
        group_name="latefill",
        description=f"latefill pipeline {name} ({config})",
    )
    def pipeline_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        engine = Engine(config, name)
        period = period_of_key(partitions, context.partition_key, engine.granularity)
        try:
            outcome = engine.run_date(period, late="report")
        except LatefillError as error:
            raise dg.Failure(
                description=f"{type(error).__name__} (exit {error.exit_code}): {error}",
                metadata={"exit_code": error.exit_code, "retryable": error.retryable},
                allow_retries=error.retryable,
            ) from error
        run = outcome.run
        return dg.MaterializeResult(
            metadata={
                "partition": run.partition,
                "strategy": run.strategy or "recovered",
                "rows_read": run.rows_read,
                "bytes_read": run.bytes_read,
                "rows_written": run.rows_written,
                "source_version": run.source_version,
                "target_version": run.target_version,
                "transform": run.transform,
                "late_found": [p.period for p in outcome.late],
            }
        )

    return pipeline_asset


def assets(config: Union[str, os.PathLike], *, start_date: str) -> List[dg.AssetsDefinition]:
    """One partitioned asset per pipeline of ``config`` (a pipeline or project file),
    upstream pipelines' assets as dependencies."""
    path = os.fspath(config)
    project = Project(path)
    out = []
    for name in project.pipelines:
        granularity = project.engine(name).granularity
        out.append(_asset(path, name, project.upstream(name), partitions_def(granularity, start_date)))
    return out


def late_partitions_sensor(
    config: Union[str, os.PathLike],
    *,
    start_date: str,
    name: str = "latefill_late_partitions",
    minimum_interval_seconds: int = 300,
    job_name: Optional[str] = None,
) -> dg.SensorDefinition:
    """A sensor that requests one run of an asset's partition per late partition of
    its pipeline (``asset_selection`` of that asset), with the reason as tags."""
    path = os.fspath(config)
    project = Project(path)
    names = project.pipelines

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=[dg.AssetKey(asset_name(n)) for n in names],
        job_name=job_name,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        requests: List[dg.RunRequest] = []
        for pipeline in names:
            engine = project.engine(pipeline)
            partitions = partitions_def(engine.granularity, start_date)
            for row in engine.status():
                if not row.late:
                    continue
                requests.append(
                    dg.RunRequest(
                        run_key=f"{pipeline}:{row.period}:{row.last_change_version}",
                        partition_key=key_of_period(partitions, row.period),
                        asset_selection=[dg.AssetKey(asset_name(pipeline))],
                        tags={
                            "latefill/pipeline": pipeline,
                            "latefill/reason": (
                                f"late data: {row.partition} was processed at source version "
                                f"{row.source_version}; its data changed at version "
                                f"{row.last_change_version}"
                            ),
                        },
                    )
                )
        return dg.SensorResult(run_requests=requests)

    return sensor


def definitions(
    config: Union[str, os.PathLike], *, start_date: str, minimum_interval_seconds: int = 300
) -> dg.Definitions:
    """The assets of ``config``'s pipelines and the late-partition sensor."""
    return dg.Definitions(
        assets=assets(config, start_date=start_date),
        sensors=[
            late_partitions_sensor(
                config, start_date=start_date, minimum_interval_seconds=minimum_interval_seconds
            )
        ],
    )
