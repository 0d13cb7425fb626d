"""Airflow DAG: one latefill run per day, reading its JSON output.

`latefill run --date {{ ds }}` processes the day, then reprocesses every earlier
partition whose source data changed since it was processed. The task parses the JSON
object latefill prints and fails the task on a non-zero exit code:

  0 success, 1 storage failure/bug, 2 usage/config, 3 data, 4 contention, 130 interrupted.

Contention (4) means another run holds the partition: Airflow's retry is the right
response. Everything latefill needs is in the pipeline file; no Spark, no JVM.
"""

import json
import subprocess
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowException
from airflow.operators.python import PythonOperator

LATEFILL = "/usr/local/bin/latefill"
PIPELINE = "/etc/latefill/devices_daily.toml"


def run_latefill(ds: str, **_context) -> dict:
    proc = subprocess.run(
        [LATEFILL, "run", "--config", PIPELINE, "--date", ds, "--output", "json"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        # With --output json a failure is also a JSON object on stdout.
        raise AirflowException(f"latefill exited {proc.returncode}: {proc.stderr.strip()}")
    report = json.loads(proc.stdout)
    print(
        f"{report['partition']}: source version {report['source_version']}, "
        f"{report['rows_read']} rows in, {report['rows_written']} rows out; "
        f"late: {[p['partition'] for p in report['late']]}; "
        f"backfilled: {[r['partition'] for r in report['backfilled']]}"
    )
    return report


with DAG(
    dag_id="devices_daily_latefill",
    start_date=datetime(2024, 1, 1),
    schedule="@daily",
    catchup=True,
    max_active_runs=4,  # latefill's claims make concurrent runs safe
    default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
) as dag:
    PythonOperator(task_id="latefill_run", python_callable=run_latefill)
