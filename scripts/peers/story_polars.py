"""The late-data story as a Python user would script it with deltalake + polars: the
pattern latefill implements, one process per step, as a scheduler would start it.

- `generate` appends a day of device rows to the source (the devices, versions and
  columns of `latefill generate`, without its dirty rows), partitioned by `event_time`.
- `run` processes one day and then every earlier day that is late:
  1. a Delta state table holds, per partition, its status and the source version it
     was processed at; each claim and each completion rewrites it (a compare-and-swap
     commit, as latefill's);
  2. detection replays the source's whole log from version 0 (the reference design,
     `detect_replay.py`);
  3. each partition is read at a pinned source version with `scan_delta`, aggregated
     with the default pipeline's SQL (`group_by`), and replaces its target partition
     (`write_delta` with a predicate).

    python story_polars.py generate SOURCE YYYY-MM-DD ROWS SEED
    python story_polars.py run WORKDIR YYYY-MM-DD    -> {"processed": ..., "backfilled": [...]}

WORKDIR holds `devices` (the source), `devices_daily` (the target) and `state`.
"""

import datetime
import json
import os
import sys

import random

import polars as pl
from deltalake import DeltaTable, write_deltalake

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detect_replay import detect  # noqa: E402
from reprocess_polars import reprocess  # noqa: E402

DEVICES = [
    ("galaxy", "Galaxy S24", ["14.0", "14.1", "15.0"]),
    ("galaxy", "Galaxy S23", ["13.0", "14.0", "14.1"]),
    ("galaxy", "Galaxy A54", ["13.0", "14.0"]),
    ("iphone", "iPhone 15", ["17.0", "17.1", "17.2"]),
    ("iphone", "iPhone 14", ["16.6", "17.0", "17.1"]),
    ("iphone", "iPhone SE", ["16.6", "17.2"]),
    ("pixel", "Pixel 8", ["14.0", "14.1"]),
    ("pixel", "Pixel 7a", ["13.0", "14.0"]),
    ("xperia", "Xperia 1 V", ["13.0", "14.0"]),
    ("oneplus", "OnePlus 12", ["14.0"]),
    ("htc", "HTC U23", ["13.0"]),
]
STATE_SCHEMA = {"partition": pl.Utf8, "status": pl.Utf8, "source_version": pl.Int64}


def generate(source: str, day: str, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    # One (device, version) pair per row, drawn uniformly from every pair.
    pairs = [(kind, name, v) for kind, name, versions in DEVICES for v in versions]
    drawn = rng.choices(range(len(pairs)), k=rows)
    frame = pl.DataFrame(
        {
            "type": [pairs[i][0] for i in drawn],
            "full_name": [pairs[i][1] for i in drawn],
            "version": [pairs[i][2] for i in drawn],
            "event_time": [day] * rows,
        }
    )
    frame.write_delta(source, mode="append", delta_write_options={"partition_by": ["event_time"]})


def read_state(path: str) -> dict:
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        return {}
    rows = pl.read_delta(path).to_dicts()
    return {r["partition"]: r for r in rows}


def write_state(path: str, state: dict, version_read) -> None:
    """Rewrites the whole state table; fails if another writer committed since
    `version_read` (deltalake's optimistic concurrency)."""
    frame = pl.DataFrame(list(state.values()), schema=STATE_SCHEMA)
    if version_read is None:
        write_deltalake(path, frame.to_arrow(), mode="error")
    else:
        write_deltalake(path, frame.to_arrow(), mode="overwrite")


def process(work: str, day: str, version: int) -> int:
    return reprocess(
        os.path.join(work, "devices"), os.path.join(work, "devices_daily"), day, version
    )


def transition(work: str, partition: str, status: str, version) -> None:
    path = os.path.join(work, "state")
    state = read_state(path)
    read_version = DeltaTable(path).version() if state else None
    row = state.get(partition, {"partition": partition, "source_version": None})
    if status == "processing" and row.get("status") == "processing":
        raise SystemExit(f"{partition} is being processed by another run")
    row["status"] = status
    if version is not None:
        row["source_version"] = version
    state[partition] = row
    write_state(path, state, read_version)


def run(work: str, day: str) -> dict:
    source = os.path.join(work, "devices")
    version = DeltaTable(source).version()
    partition = f"event_time={day}"
    transition(work, partition, "processing", None)
    process(work, day, version)
    transition(work, partition, "processed", version)

    # Late partitions: processed at a version older than their last change.
    changes = detect(source)["partitions"]
    state = read_state(os.path.join(work, "state"))
    late = sorted(
        name
        for name, row in state.items()
        if name < partition
        and row["status"] == "processed"
        and changes.get(name, -1) > row["source_version"]
    )
    for name in late:
        late_day = name.split("=", 1)[1]
        transition(work, name, "processing", None)
        process(work, late_day, version)
        transition(work, name, "processed", version)
    return {"processed": partition, "source_version": version, "backfilled": late}


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "generate":
        source, day, rows, seed = sys.argv[2:6]
        datetime.date.fromisoformat(day)
        generate(source, day, int(rows), int(seed))
    elif command == "run":
        print(json.dumps(run(sys.argv[2], sys.argv[3])))
    else:
        raise SystemExit(f"unknown command {command!r}: generate or run")
    sys.stdout.flush()
    # deltalake's native threads can abort the interpreter's teardown: leave at once.
    os._exit(0)
