"""latefill: reprocess the partitions of a Delta table whose data arrived late.

latefill records, per partition, the source version it processed; finds the
partitions whose data changed since (from the source's Delta log); and reprocesses
them with a SQL transform, safely from many workers at once.

>>> import latefill                                          # doctest: +SKIP
>>> engine = latefill.Engine("latefill.toml")                # doctest: +SKIP
>>> outcome = engine.run_date("2024-01-08")                  # doctest: +SKIP
>>> outcome.run.rows_written, [p.period for p in outcome.backfilled]   # doctest: +SKIP
(1234, ['2024-01-02'])

The ``latefill`` command this package installs is the same command line as the Rust
binary. ``latefill.airflow`` and ``latefill.dagster`` schedule it.
"""

from ._latefill import __version__
from .engine import Engine, Project, changes
from .errors import ContentionError, DataError, LatefillError, StorageError, UsageError
from .results import (
    AuditOutcome,
    BackfillEvent,
    BackfillReport,
    Changes,
    Detection,
    DetectionSummary,
    LatePartition,
    PartitionChange,
    RunOutcome,
    RunReport,
    Skipped,
    StatusRow,
)

__all__ = [
    "__version__",
    "Engine",
    "Project",
    "changes",
    "LatefillError",
    "UsageError",
    "DataError",
    "ContentionError",
    "StorageError",
    "AuditOutcome",
    "BackfillEvent",
    "BackfillReport",
    "Changes",
    "Detection",
    "DetectionSummary",
    "LatePartition",
    "PartitionChange",
    "RunOutcome",
    "RunReport",
    "Skipped",
    "StatusRow",
]
