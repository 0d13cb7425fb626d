"""The reference design's detection, in Python: replay every commit from version 0 on
each run and keep, per partition, the last version whose add/remove had dataChange.

    python detect_replay.py TABLE_PATH  ->  prints {"table_version": N, "partitions": {...}}
"""

import json
import os
import sys


def detect(table: str) -> dict:
    log = os.path.join(table, "_delta_log")
    versions = sorted(
        int(name[:20]) for name in os.listdir(log) if name.endswith(".json") and len(name) == 25
    )
    partition_columns: list = []
    last_change: dict = {}
    paths: dict = {}
    for version in versions:
        with open(os.path.join(log, f"{version:020}.json")) as f:
            for line in f:
                action = json.loads(line)
                if "metaData" in action:
                    partition_columns = action["metaData"]["partitionColumns"]
                for kind in ("add", "remove"):
                    file = action.get(kind)
                    if file is None:
                        continue
                    values = file.get("partitionValues")
                    if values is None:
                        values = paths.get(file["path"], {})
                    if kind == "add":
                        paths[file["path"]] = values
                    if file.get("dataChange", True):
                        name = "/".join(
                            f"{c}={values.get(c) if values.get(c) is not None else '__HIVE_DEFAULT_PARTITION__'}"
                            for c in partition_columns
                        )
                        last_change[name] = version
    return {"table_version": versions[-1], "partitions": dict(sorted(last_change.items()))}


if __name__ == "__main__":
    print(json.dumps(detect(sys.argv[1])))
