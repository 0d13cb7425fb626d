"""A daily DAG that processes each day with latefill and fans its late partitions out:
one mapped ``reprocess`` task instance per late partition, each with its own logs,
retries and duration in the grid.

Copy it into your dags folder and set the Airflow Variable ``latefill_config`` to your
pipeline file (``airflow variables set latefill_config /path/to/latefill.toml``, or
``AIRFLOW_VAR_LATEFILL_CONFIG``). Needs ``pip install 'latefill[airflow]'``.
"""

from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable

from latefill.airflow import late_data_task_group

with DAG(
    dag_id="latefill_daily",
    # Each run covers the day that ended: data_interval_start is the partition.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["latefill"],
) as dag:
    late_data_task_group(
        config="{{ var.value.latefill_config }}",
        lookback="{{ var.value.get('latefill_lookback', '') }}",
        retries=3,
        retry_delay=timedelta(minutes=2),
    )
