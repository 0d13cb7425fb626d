"""latefill.dagster in process, with Dagster from PyPI: partitioned assets that run
latefill, and the sensor that turns late data into one run per late partition."""

from __future__ import annotations

import dagster as dg

import latefill.dagster
from conftest import Workspace, recomputed, table_rows


def test_assets_materialize_partitions_and_the_sensor_requests_exactly_the_late_ones(
    ws: Workspace,
) -> None:
    for day, seed in (("2024-01-01", 1), ("2024-01-02", 2), ("2024-01-03", 3)):
        ws.generate(day, 1_000, seed)
    assets = latefill.dagster.assets(ws.config, start_date="2024-01-01")
    sensor = latefill.dagster.late_partitions_sensor(ws.config, start_date="2024-01-01")
    instance = dg.DagsterInstance.ephemeral()

    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        result = dg.materialize(assets, partition_key=day, instance=instance)
        assert result.success
        [event] = result.asset_materializations_for_node("devices_daily")
        assert event.partition == day
        assert event.metadata["rows_read"].value == 1_000
        assert event.metadata["partition"].value == f"event_time={day}"
        assert event.metadata["source_version"].value >= 0

    def requested() -> list:
        context = dg.build_sensor_context(instance=instance)
        return list(sensor(context).run_requests or [])

    assert requested() == [], "nothing is late yet"

    ws.generate("2024-01-01", 100, 11)
    ws.generate("2024-01-03", 100, 13)
    requests = requested()
    assert sorted(r.partition_key for r in requests) == ["2024-01-01", "2024-01-03"]
    for request in requests:
        assert request.asset_selection == [dg.AssetKey("devices_daily")]
        assert "late data: event_time=" in request.tags["latefill/reason"]
    # The same change is one run: its run key holds the version of the change.
    assert len({r.run_key for r in requests}) == 2
    assert {r.run_key for r in requested()} == {r.run_key for r in requests}

    for request in requests:
        assert dg.materialize(assets, partition_key=request.partition_key, instance=instance).success
    assert requested() == []
    assert table_rows(ws.target) == recomputed(ws.source)


def test_a_project_is_one_asset_per_pipeline_with_its_upstream_as_a_dependency(
    ws: Workspace,
) -> None:
    ws.generate("2024-01-01", 500, 1)
    defs = latefill.dagster.definitions(ws.project(), start_date="2024-01-01")
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"devices_daily", "type_daily"}
    assert graph.get(dg.AssetKey("type_daily")).parent_keys == {dg.AssetKey("devices_daily")}

    assets = latefill.dagster.assets(ws.project(), start_date="2024-01-01")
    result = dg.materialize(assets, partition_key="2024-01-01", instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [upstream] = result.asset_materializations_for_node("devices_daily")
    [downstream] = result.asset_materializations_for_node("type_daily")
    assert upstream.metadata["rows_read"].value == 500
    assert upstream.metadata["strategy"].value == "replace"
    assert downstream.metadata["rows_read"].value == upstream.metadata["rows_written"].value


def test_the_example_definitions_load(ws: Workspace, monkeypatch) -> None:
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "dagster" / "definitions.py"
    monkeypatch.setenv("LATEFILL_CONFIG", str(ws.project()))
    defs = runpy.run_path(str(example))["defs"]
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {
        "devices_daily",
        "type_daily",
    }
    assert [s.name for s in defs.sensors] == ["latefill_late_partitions"]
