"""latefill.airflow with Airflow 3 from PyPI: ``airflow dags test`` of the example DAG
(examples/airflow/latefill_daily.py) on generated data, and of the same task group
with short retries for the retry rules. Task instances and XComs are read from
Airflow's metadata database."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import latefill
from conftest import Workspace, recomputed, table_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "airflow"

RETRY_DAG = '''
from datetime import datetime, timedelta
from airflow.sdk import DAG, CronDataIntervalTimetable
from latefill.airflow import late_data_task_group

with DAG(dag_id="latefill_retries", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=datetime(2024, 1, 1), catchup=False):
    late_data_task_group(config="{{ var.value.latefill_config }}", retries=1,
                         retry_delay=timedelta(seconds=1))
'''


class Airflow:
    """An Airflow home with a migrated metadata database and a dags folder holding
    the example DAG and the retry test's DAG."""

    def __init__(self, home: Path) -> None:
        self.home = home
        dags = home / "dags"
        dags.mkdir(parents=True)
        shutil.copy(EXAMPLES / "latefill_daily.py", dags)
        (dags / "latefill_retries.py").write_text(RETRY_DAG)
        self.env = dict(
            os.environ,
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        )
        self.airflow("db", "migrate")

    def airflow(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if config is not None:
            env["AIRFLOW_VAR_LATEFILL_CONFIG"] = str(config)
        airflow = str(Path(sys.executable).with_name("airflow"))
        return subprocess.run([airflow, *args], env=env, capture_output=True, text=True)

    def dags_test(self, dag_id: str, logical_date: str, config: Path) -> List[Tuple[str, int, str, int]]:
        """``airflow dags test``; returns the run's task instances as (task_id,
        map_index, state, try_number), sorted."""
        done = self.airflow("dags", "test", dag_id, logical_date, config=config)
        run_id = self.last_run(dag_id)
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, map_index, state, try_number FROM task_instance "
                "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
                (dag_id, run_id),
            ).fetchall()
        assert rows, done.stdout[-3000:] + done.stderr[-3000:]
        return rows

    def last_run(self, dag_id: str) -> str:
        with sqlite3.connect(self.home / "airflow.db") as db:
            (run_id,) = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
        return run_id

    def xcom(self, dag_id: str, task_id: str, key: str, map_index: int = -1) -> object:
        with sqlite3.connect(self.home / "airflow.db") as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? "
                "AND key = ? AND map_index = ?",
                (dag_id, self.last_run(dag_id), task_id, key, map_index),
            ).fetchone()
        assert row is not None, f"no XCom {key} of {task_id}"
        return json.loads(row[0])


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    return Airflow(tmp_path_factory.mktemp("airflow"))


def states(rows: List[Tuple[str, int, str, int]]) -> Dict[Tuple[str, int], str]:
    return {(task, index): state for task, index, state, _ in rows}


def test_late_partitions_fan_out_as_mapped_task_instances(airflow: Airflow, ws: Workspace) -> None:
    for day, seed in (("2024-01-01", 1), ("2024-01-02", 2), ("2024-01-03", 3)):
        ws.generate(day, 1_000, seed)
    # A run of logical date D + 1 covers the day D that ended.
    for day in ("2024-01-02", "2024-01-03", "2024-01-04"):
        rows = airflow.dags_test("latefill_daily", day, ws.config)
        assert states(rows)[("latefill.run", -1)] == "success", rows
        assert not any(task == "latefill.reprocess" and i >= 0 for task, i, _, _ in rows), rows

    # Late rows in two earlier days, then the next day.
    ws.generate("2024-01-01", 300, 11)
    ws.generate("2024-01-02", 200, 12)
    ws.generate("2024-01-04", 1_000, 4)
    rows = airflow.dags_test("latefill_daily", "2024-01-05", ws.config)
    assert states(rows) == {
        ("latefill.run", -1): "success",
        ("latefill.reprocess", 0): "success",
        ("latefill.reprocess", 1): "success",
    }, rows

    report = airflow.xcom("latefill_daily", "latefill.run", "report")
    assert report["partition"] == "event_time=2024-01-04"
    assert [p["period"] for p in report["late"]] == ["2024-01-01", "2024-01-02"]
    reprocessed = sorted(
        airflow.xcom("latefill_daily", "latefill.reprocess", "return_value", i)["period"]
        for i in (0, 1)
    )
    assert reprocessed == ["2024-01-01", "2024-01-02"]
    assert table_rows(ws.target) == recomputed(ws.source)
    assert not any(r.late or r.status != "processed" for r in latefill.Engine(ws.config).status())


def test_a_usage_error_is_not_retried_and_a_contention_error_is(airflow: Airflow, ws: Workspace) -> None:
    ws.generate("2024-01-01", 100, 1)
    broken = ws.root / "broken.toml"
    broken.write_text(ws.config.read_text() + "\nunknown_key = 1\n")
    rows = airflow.dags_test("latefill_retries", "2024-01-02", broken)
    assert [(t, s, n) for t, _, s, n in rows if t == "latefill.run"] == [("latefill.run", "failed", 1)]
    error = airflow.xcom("latefill_retries", "latefill.run", "latefill_error")
    assert error["kind"] == "UsageError" and error["exit_code"] == 2

    # Another run has claimed 2024-01-01 (late) for its scheduler: the day's task
    # meets contention, is retried once, and fails with the claim still held.
    engine = latefill.Engine(ws.config)
    engine.run_date("2024-01-01")
    ws.generate("2024-01-01", 10, 2)
    ws.generate("2024-01-02", 10, 3)
    engine.run_date("2024-01-02", plan_file=ws.root / "plan.json")
    rows = airflow.dags_test("latefill_retries", "2024-01-02", ws.config)
    assert [(t, s, n) for t, _, s, n in rows if t == "latefill.run"] == [("latefill.run", "failed", 2)]
    error = airflow.xcom("latefill_retries", "latefill.run", "latefill_error")
    assert error["kind"] == "ContentionError" and error["exit_code"] == 4


def test_the_period_processed_is_the_interval_that_ended() -> None:
    from datetime import datetime, timezone

    from latefill.airflow import period_of

    def at(*args: int) -> datetime:
        return datetime(*args, tzinfo=timezone.utc)

    # A data interval timetable: the interval's start.
    interval = {"data_interval_start": at(2024, 1, 3), "data_interval_end": at(2024, 1, 4)}
    assert period_of(interval, "day") == "2024-01-03"
    # A trigger timetable (Airflow 3's @daily): no interval; the period before the run.
    trigger = {"data_interval_start": at(2024, 1, 4), "data_interval_end": at(2024, 1, 4)}
    assert period_of(trigger, "day") == "2024-01-03"
    assert period_of({"data_interval_start": at(2024, 1, 4, 5), "data_interval_end": at(2024, 1, 4, 5)}, "hour") == "2024-01-04T04"
    assert period_of({"data_interval_start": at(2024, 2, 1), "data_interval_end": at(2024, 3, 1)}, "month") == "2024-02"
