"""`config.settings`: the link rules and windows from `warehouse/settings.yaml`, as a table the SQL reads."""

from pathlib import Path

import yaml
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from pipelines.resources import Warehouse
from pipelines.settings import WAREHOUSE_SQL_DIR

SETTINGS_FILE = WAREHOUSE_SQL_DIR / "settings.yaml"


def settings_rows(path: Path = SETTINGS_FILE) -> list[tuple[str, str, str]]:
    """(key, value, description) rows; a list value gives one row per element."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rows = []
    for key, entry in raw.items():
        if not isinstance(entry, dict) or "value" not in entry or "description" not in entry:
            raise ValueError(f"{path}: `{key}` needs `value` and `description`")
        values = entry["value"] if isinstance(entry["value"], list) else [entry["value"]]
        rows.extend((key, str(v), str(entry["description"])) for v in values)
    return rows


def write_settings(con: object, rows: list[tuple[str, str, str]]) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS config")  # type: ignore[attr-defined]
    con.execute("CREATE OR REPLACE TABLE config.settings (key VARCHAR, value VARCHAR, description VARCHAR)")  # type: ignore[attr-defined]
    con.executemany("INSERT INTO config.settings VALUES (?, ?, ?)", rows)  # type: ignore[attr-defined]
    con.execute(  # type: ignore[attr-defined]
        "COMMENT ON TABLE config.settings IS 'Link rules and windows from warehouse/settings.yaml; one row per value.'"
    )
    for column, doc in [
        ("key", "Setting name."),
        ("value", "One value (lists give one row per element)."),
        ("description", "What the setting controls."),
    ]:
        con.execute(f"COMMENT ON COLUMN config.settings.{column} IS '{doc}'")  # type: ignore[attr-defined]


@asset(
    key=AssetKey(["config", "settings"]),
    group_name="config",
    kinds={"duckdb", "yaml"},
    description="Link rules and windows the SQL models read, from `warehouse/settings.yaml` (one row per value).",
)
def config_settings(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    rows = settings_rows()
    with warehouse.connect() as con:
        write_settings(con, rows)
    return MaterializeResult(metadata={"dagster/row_count": len(rows)})


FEATURE_MAP_FILE = WAREHOUSE_SQL_DIR / "feature_map.yaml"


def feature_map_rows(path: Path = FEATURE_MAP_FILE) -> tuple[str, list[tuple[str, str]]]:
    """The property that names a feature, and the (event name → epic key) map for older events."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "property" not in raw:
        raise ValueError(f"{path}: `property` (the Mixpanel property holding the epic key) is required")
    return str(raw["property"]), [(str(k), str(v)) for k, v in (raw.get("events") or {}).items()]


@asset(
    key=AssetKey(["config", "feature_map"]),
    group_name="config",
    kinds={"duckdb", "yaml"},
    description="Mixpanel event name → feature (Jira epic) for events without the feature property, "
    "from `warehouse/feature_map.yaml`.",
)
def config_feature_map(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    prop, rows = feature_map_rows()
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS config")
        con.execute(
            "CREATE OR REPLACE TABLE config.feature_map (event_name VARCHAR, feature_key VARCHAR, property VARCHAR)"
        )
        con.executemany("INSERT INTO config.feature_map VALUES (?, ?, ?)", [(e, k, prop) for e, k in rows])
        con.execute("COMMENT ON TABLE config.feature_map IS 'Mixpanel event name to Jira epic, from feature_map.yaml.'")
        con.execute("COMMENT ON COLUMN config.feature_map.event_name IS 'Mixpanel event name.'")
        con.execute("COMMENT ON COLUMN config.feature_map.feature_key IS 'Jira epic key the event belongs to.'")
        con.execute(
            "COMMENT ON COLUMN config.feature_map.property IS "
            "'Event property that names the epic directly (takes precedence over the name map).'"
        )
    return MaterializeResult(metadata={"dagster/row_count": len(rows), "property": prop})
