"""Per-partition last change versions with DuckDB reading _delta_log/*.json: the
strongest plain-SQL approach (single partition column `event_time`).

    python detect_duckdb.py TABLE_PATH  ->  prints {"table_version": N, "partitions": {...}}
"""

import json
import sys

import duckdb

SQL = r"""
WITH lines AS (
    SELECT CAST(regexp_extract(filename, '([0-9]{20})\.json$', 1) AS BIGINT) AS version, json
    FROM read_ndjson_objects(?, filename = true)
), files AS (
    SELECT version, coalesce(json -> '$.add', json -> '$.remove') AS f FROM lines
)
SELECT 'event_time=' || coalesce(f ->> '$.partitionValues.event_time', '__HIVE_DEFAULT_PARTITION__')
           AS partition,
       max(version) AS last_change_version
FROM files
WHERE f IS NOT NULL AND coalesce(CAST(f ->> '$.dataChange' AS BOOLEAN), true)
GROUP BY 1 ORDER BY 1
"""


def detect(table: str) -> dict:
    con = duckdb.connect()
    pattern = f"{table.rstrip('/')}/_delta_log/*.json"
    rows = con.execute(SQL, [pattern]).fetchall()
    version = con.execute(
        "SELECT max(CAST(regexp_extract(file, '([0-9]{20})\\.json$', 1) AS BIGINT)) FROM glob(?)",
        [pattern],
    ).fetchone()[0]
    return {"table_version": version, "partitions": {p: v for p, v in rows}}


if __name__ == "__main__":
    print(json.dumps(detect(sys.argv[1])))
