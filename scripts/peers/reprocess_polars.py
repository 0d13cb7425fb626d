"""Reprocess one partition with Python deltalake + polars: scan_delta, group_by,
write_delta replacing that partition (a predicate overwrite).

    python reprocess_polars.py SOURCE TARGET YYYY-MM-DD
"""

import sys

import polars as pl


def reprocess(source: str, target: str, day: str, version=None) -> int:
    """Rewrites `day`'s partition of `target` from `source` (at `version`, else the
    latest); returns the number of rows written."""
    result = (
        pl.scan_delta(source, version=version)
        .filter(pl.col("event_time") == day)
        .group_by(["type", "version", "event_time"])
        .agg(pl.len().cast(pl.Int64).alias("devices"))
        .select(["type", "version", "devices", "event_time"])
        .collect()
    )
    result.write_delta(
        target,
        mode="overwrite",
        delta_write_options={"predicate": f"event_time = '{day}'", "partition_by": ["event_time"]},
    )
    return result.height


if __name__ == "__main__":
    source, target, day = sys.argv[1:4]
    print(reprocess(source, target, day))
