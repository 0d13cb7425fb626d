"""Dagster definitions for a latefill project: one partitioned asset per pipeline and
a sensor that requests a run for each late partition.

    LATEFILL_CONFIG=/path/to/project.toml dagster dev -f definitions.py

Needs ``pip install 'latefill[dagster]'``. ``LATEFILL_START_DATE`` is the first
partition (default 2024-01-01).
"""

import os

import latefill.dagster

defs = latefill.dagster.definitions(
    os.environ["LATEFILL_CONFIG"],
    start_date=os.environ.get("LATEFILL_START_DATE", "2024-01-01"),
)
