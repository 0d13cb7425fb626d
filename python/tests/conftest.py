"""Shared fixtures: a workspace of real Delta tables made by the installed ``latefill``
command, and an independent recomputation of the target (deltalake + polars)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

DEFAULT_SQL = (
    "SELECT type, version, count(*) AS devices, event_time FROM source "
    "GROUP BY type, version, event_time"
)

TYPES_SQL = (
    "SELECT type, sum(devices) AS devices, event_time FROM source GROUP BY type, event_time"
)


def latefill_command() -> str:
    """The ``latefill`` command the package installed (the one under test)."""
    path = shutil.which("latefill")
    assert path is not None, "the package's latefill command is not on PATH"
    return path


class Workspace:
    """A directory with a source table of device rows and a pipeline file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "latefill.toml"
        self.config.write_text(
            "name = \"devices_daily\"\n"
            "[source]\ntable = \"devices\"\npartition_column = \"event_time\"\n"
            "[target]\ntable = \"devices_daily\"\n"
            "[state]\ntable = \"state\"\n"
            f"[transform]\nsql = '''{DEFAULT_SQL}'''\n"
        )

    @property
    def source(self) -> Path:
        return self.root / "devices"

    @property
    def target(self) -> Path:
        return self.root / "devices_daily"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs the installed ``latefill`` command in the workspace."""
        done = subprocess.run(
            [latefill_command(), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def generate(self, day: str, rows: int, seed: int) -> None:
        """Appends ``rows`` device rows for ``day`` to the source (a commit)."""
        self.cli("generate", "--table", str(self.source), "--date", day,
                 "--rows", str(rows), "--seed", str(seed))

    def project(self) -> Path:
        """A project of two pipelines, declared downstream first: devices ->
        devices_daily -> type_daily, on one state table."""
        path = self.root / "project.toml"

        def entry(name: str, source: str, sql: str) -> str:
            return (
                f"[[pipeline]]\nname = \"{name}\"\n"
                f"source = {{ table = \"{source}\", partition_column = \"event_time\" }}\n"
                f"target = {{ table = \"{name}\" }}\n"
                "state = { table = \"state\" }\n"
                f"transform = {{ sql = '''{sql}''' }}\n\n"
            )

        path.write_text(
            entry("type_daily", "devices_daily", TYPES_SQL)
            + entry("devices_daily", "devices", DEFAULT_SQL)
        )
        return path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def table_rows(path: Path) -> List[Dict]:
    """A Delta table's rows, sorted, read with deltalake (not latefill)."""
    import polars as pl
    from deltalake import DeltaTable

    frame = pl.from_arrow(DeltaTable(str(path)).to_pyarrow_table())
    frame = frame.with_columns(pl.col("event_time").cast(pl.Utf8))
    return frame.sort(sorted(frame.columns)).to_dicts()


def recomputed(source: Path) -> List[Dict]:
    """The default transform over the whole source, computed by polars from the
    source's current rows: what the target must hold."""
    import polars as pl
    from deltalake import DeltaTable

    frame = pl.from_arrow(DeltaTable(str(source)).to_pyarrow_table())
    frame = (
        frame.group_by(["type", "version", "event_time"])
        .agg(pl.len().cast(pl.Int64).alias("devices"))
        .select(["type", "version", "devices", "event_time"])
        .with_columns(pl.col("event_time").cast(pl.Utf8))
    )
    return frame.sort(sorted(frame.columns)).to_dicts()
