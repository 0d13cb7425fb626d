"""What latefill's calls return: typed, with ``to_dict()`` for JSON and XCom.

Each class is the Python form of the Rust type of the same name, built from the
JSON that ``latefill ... --format json`` prints; ``to_dict()`` gives that JSON's
shape back (datetimes as ISO 8601 text).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional


def _time(value: Optional[str]) -> Optional[datetime]:
    if value is None:
        return None
    # Rust writes RFC 3339 with a `Z` or an offset; fromisoformat takes both from 3.11.
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return value.to_dict()  # type: ignore[union-attr]
    return value


class _Result:
    def to_dict(self) -> Dict[str, Any]:
        """The result as plain data (what ``--format json`` prints)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class AuditOutcome(_Result):
    """One audit of a partition's result, run before the commit."""

    name: str
    severity: str
    """``error`` (a failure fails the partition) or ``warn`` (published anyway)."""
    passed: bool
    failing_rows: int
    """How many rows offended (1 for a failed row count or comparison)."""
    message: str
    samples: List[Dict[str, Any]] = field(default_factory=list)
    """Up to 5 offending rows."""

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "AuditOutcome":
        return cls(
            name=d["name"],
            severity=d["severity"],
            passed=d["passed"],
            failing_rows=d["failing_rows"],
            message=d["message"],
            samples=d.get("samples", []),
        )


@dataclass(frozen=True)
class RunReport(_Result):
    """One partition processed: what was read and written."""

    partition: str
    """The partition's name, e.g. ``event_time=2024-01-03``."""
    period: str
    """The partition's period alone (``2024-01-03``), as ``run_date`` takes it."""
    source_version: int
    """The source version the partition was read at."""
    files_read: int
    rows_read: int
    rows_written: int
    target_version: int
    """The target's version after the commit that replaced the partition."""
    fingerprint: str
    transform: str
    """The version of the transform that wrote it."""
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    recovered: bool = False
    """True when a run that died after its commit had written it already."""
    strategy: Optional[str] = None
    """``incremental`` (updated from the late rows), ``replace`` (recomputed from
    all its rows), or None when ``recovered``."""
    strategy_reason: Optional[str] = None
    """Why the other strategy was not chosen."""
    bytes_read: int = 0
    """Source bytes read (the late files alone for an incremental update)."""
    memory_peak: Optional[int] = None
    """The most memory, in bytes, the transform's operators held at once (as
    DataFusion accounts it), or None when nothing ran."""
    audits: List[AuditOutcome] = field(default_factory=list)
    """The pipeline's audits, as they ran on this partition's result (those of
    severity ``warn`` may have failed; a failing ``error`` audit fails the run)."""

    @property
    def audit_warnings(self) -> List[AuditOutcome]:
        """The audits that failed with severity ``warn``."""
        return [a for a in self.audits if not a.passed]

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunReport":
        return cls(
            partition=d["partition"],
            period=d.get("period", ""),
            source_version=d["source_version"],
            files_read=d["files_read"],
            rows_read=d["rows_read"],
            rows_written=d["rows_written"],
            target_version=d["target_version"],
            fingerprint=d["fingerprint"],
            transform=d["transform"],
            started_at=_time(d["started_at"]),  # type: ignore[arg-type]
            finished_at=_time(d["finished_at"]),  # type: ignore[arg-type]
            duration_ms=d["duration_ms"],
            recovered=d.get("recovered", False),
            strategy=d.get("strategy"),
            strategy_reason=d.get("strategy_reason"),
            bytes_read=d.get("bytes_read", 0),
            memory_peak=d.get("memory_peak"),
            audits=[AuditOutcome.from_dict(a) for a in d.get("audits", [])],
        )


@dataclass(frozen=True)
class LatePartition(_Result):
    """A processed partition whose source data changed since."""

    partition: str
    period: str
    processed_at: Optional[int]
    """The source version it was processed at (None: a replaced source's)."""
    last_change_version: int
    exact: bool
    """False when log cleanup hid the exact version and the files decided."""
    strategy: Optional[Dict[str, Any]] = None
    """How a run would bring it up to date (set by ``detect``): ``strategy``
    (``incremental`` or ``replace``), ``reason``, and the ``rows``, ``bytes`` and
    ``files`` that ``replace`` and ``incremental`` would read."""

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LatePartition":
        return cls(
            partition=d["partition"],
            period=d["period"],
            processed_at=d.get("processed_at"),
            last_change_version=d["last_change_version"],
            exact=d["exact"],
            strategy=d.get("strategy"),
        )


@dataclass(frozen=True)
class Skipped(_Result):
    """A partition not processed (another run held it), or that failed."""

    partition: str
    reason: str

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Skipped":
        return cls(partition=d["partition"], reason=d["reason"])


@dataclass(frozen=True)
class DetectionSummary(_Result):
    """How the source's log was read."""

    table_version: int
    mode: str
    """``cursor`` (only new commits), ``since`` or ``full``."""
    commits_read: int
    exact: bool
    inexact_reason: Optional[str] = None
    source_replaced: Optional[str] = None
    unrecognised: List[Dict[str, str]] = field(default_factory=list)
    """Source partitions that name no partition of the pipeline, with why."""

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DetectionSummary":
        return cls(
            table_version=d["table_version"],
            mode=d["mode"],
            commits_read=d["commits_read"],
            exact=d["exact"],
            inexact_reason=d.get("inexact_reason"),
            source_replaced=d.get("source_replaced"),
            unrecognised=list(d.get("unrecognised", [])),
        )


@dataclass(frozen=True)
class RunOutcome(_Result):
    """What ``Engine.run_date`` did: the date's run, and the late partitions."""

    run: RunReport
    """The run of the date itself."""
    detection: DetectionSummary
    late: List[LatePartition]
    """The late partitions found before the date."""
    backfilled: List[RunReport]
    """The late partitions reprocessed by this run."""
    skipped: List[Skipped]
    failed: List[Skipped]
    backfill_config: Optional[str] = None
    """Where the plan was written for a scheduler (``plan_file=``)."""

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunOutcome":
        return cls(
            run=RunReport.from_dict(d),
            detection=DetectionSummary.from_dict(d["detection"]),
            late=[LatePartition.from_dict(x) for x in d["late"]],
            backfilled=[RunReport.from_dict(x) for x in d["backfilled"]],
            skipped=[Skipped.from_dict(x) for x in d["skipped"]],
            failed=[Skipped.from_dict(x) for x in d["failed"]],
            backfill_config=d.get("backfill_config"),
        )

    def to_dict(self) -> Dict[str, Any]:
        out = self.run.to_dict()
        out.update(
            detection=self.detection.to_dict(),
            late=[x.to_dict() for x in self.late],
            backfilled=[x.to_dict() for x in self.backfilled],
            skipped=[x.to_dict() for x in self.skipped],
            failed=[x.to_dict() for x in self.failed],
        )
        if self.backfill_config is not None:
            out["backfill_config"] = self.backfill_config
        return out


@dataclass(frozen=True)
class Detection(_Result):
    """What is late (and stale) before a date, found without processing anything."""

    detection: DetectionSummary
    late: List[LatePartition]
    stale: List[str]
    """Partitions processed by another version of the transform."""

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Detection":
        return cls(
            detection=DetectionSummary.from_dict(d["detection"]),
            late=[LatePartition.from_dict(x) for x in d["late"]],
            stale=list(d["stale"]),
        )


@dataclass(frozen=True)
class BackfillReport(_Result):
    """What ``Engine.backfill`` did."""

    planned: List[str]
    processed: List[RunReport]
    skipped: List[Skipped]
    failed: List[Skipped]
    interrupted: bool
    duration_ms: int

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "BackfillReport":
        return cls(
            planned=list(d["planned"]),
            processed=[RunReport.from_dict(x) for x in d["processed"]],
            skipped=[Skipped.from_dict(x) for x in d["skipped"]],
            failed=[Skipped.from_dict(x) for x in d["failed"]],
            interrupted=d["interrupted"],
            duration_ms=d["duration_ms"],
        )


@dataclass(frozen=True)
class BackfillEvent(_Result):
    """One step of a backfill, as it happens (``Engine.backfill(on_event=...)``)."""

    event: str
    """``planned``, ``claimed``, ``started``, ``processed``, ``skipped`` or ``failed``."""
    partitions: List[str] = field(default_factory=list)
    """For ``planned`` and ``claimed``."""
    partition: Optional[str] = None
    """For the others."""
    report: Optional[RunReport] = None
    """For ``processed``."""
    reason: Optional[str] = None
    """For ``skipped`` and ``failed``."""

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "BackfillEvent":
        event = d["event"]
        return cls(
            event=event,
            partitions=list(d.get("partitions", [])),
            partition=d.get("partition"),
            report=RunReport.from_dict(d) if event == "processed" else None,
            reason=d.get("reason"),
        )


@dataclass(frozen=True)
class StatusRow(_Result):
    """One partition of ``Engine.status()``."""

    pipeline: str
    partition: str
    period: str
    status: str
    """``processing``, ``processed``, ``failed`` or ``unprocessed``."""
    source_version: Optional[int]
    last_change_version: Optional[int]
    late: bool
    stale: bool
    transform: Optional[str]
    owner: Optional[str]
    lease_expires_at: Optional[datetime]
    attempts: int
    last_error: Optional[str]
    """Why the last run failed: a failed audit's name and sample rows included."""
    updated_at: Optional[datetime] = None
    """When the state row last changed."""
    last_run: Optional[Dict[str, Any]] = None
    """What the last completed run recorded: ``started_at``, ``duration_ms``,
    ``strategy``, ``rows_read``, ``bytes_read``, ``rows_written``,
    ``target_version`` and ``audit_warnings``."""

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "StatusRow":
        return cls(
            pipeline=d["pipeline"],
            partition=d["partition"],
            period=d["period"],
            status=d["status"],
            source_version=d.get("source_version"),
            last_change_version=d.get("last_change_version"),
            late=d["late"],
            stale=d["stale"],
            transform=d.get("transform"),
            owner=d.get("owner"),
            lease_expires_at=_time(d.get("lease_expires_at")),
            attempts=d["attempts"],
            last_error=d.get("last_error"),
            updated_at=_time(d.get("updated_at")),
            last_run=d.get("last_run"),
        )


@dataclass(frozen=True)
class PartitionChange(_Result):
    """A source partition's last data change (``latefill.changes``)."""

    partition: str
    last_change_version: int
    exact: bool

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PartitionChange":
        return cls(
            partition=d["partition"],
            last_change_version=d["last_change_version"],
            exact=d["exact"],
        )


@dataclass(frozen=True)
class Changes(_Result):
    """A source table's partitions and when their data last changed."""

    table_version: int
    partition_columns: List[str]
    partitions: List[PartitionChange]
    exact: bool
    inexact_reason: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Changes":
        return cls(
            table_version=d["table_version"],
            partition_columns=list(d["partition_columns"]),
            partitions=[PartitionChange.from_dict(x) for x in d["partitions"]],
            exact=d["exact"],
            inexact_reason=d.get("inexact_reason"),
        )
