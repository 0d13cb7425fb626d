"""Reprocess one partition with DuckDB: the partition's files from the Delta log (Python
deltalake), aggregated by DuckDB, written back replacing that partition.

    python reprocess_duckdb.py SOURCE TARGET YYYY-MM-DD
"""

import sys
import warnings

import duckdb
from deltalake import DeltaTable, write_deltalake

source, target, day = sys.argv[1:4]
# `partition_filters` works and is deprecated in newer deltalake releases.
warnings.simplefilter("ignore", DeprecationWarning)
files = DeltaTable(source).file_uris([("event_time", "=", day)])
def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# con.sql(...).to_arrow_table() streams the result without the copy a DB-API cursor makes.
result = (
    duckdb.connect()
    .sql(
        f"SELECT type, version, count(*) AS devices, {quote(day)} AS event_time "
        f"FROM read_parquet([{', '.join(quote(f) for f in files)}]) GROUP BY type, version"
    )
    .to_arrow_table()
)
write_deltalake(
    target, result, mode="overwrite", predicate=f"event_time = '{day}'", partition_by=["event_time"]
)
print(result.num_rows)
