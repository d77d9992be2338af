"""Tables a source declares but dlt has not created yet, created empty so SQL models can always read them.

dlt creates a table when its first row arrives and cannot materialise a nested (child) table
ahead of its data: a Jira site that never used sprints has no `issues__fields__sprints`, a Jenkins
controller that never ran a parameterised build has no `builds__parameters`. The staging models
must read them regardless, so the extraction assets call `create_declared_tables` after each load.
"""

from __future__ import annotations

import dlt
from dlt.common.schema.typing import TColumnSchema

_DLT_LINK_COLUMNS: dict[str, TColumnSchema] = {
    "_dlt_root_id": {"name": "_dlt_root_id", "data_type": "text", "nullable": True},
    "_dlt_parent_id": {"name": "_dlt_parent_id", "data_type": "text", "nullable": True},
    "_dlt_list_idx": {"name": "_dlt_list_idx", "data_type": "bigint", "nullable": True},
    "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": True},
}


def create_declared_tables(pipeline: dlt.Pipeline) -> list[str]:
    """Create, empty, the tables and columns the pipeline's schema declares but dlt has not created yet.

    dlt creates a table when its first row arrives and cannot materialise a nested (child) table
    ahead of its data: a controller that never ran a parameterised build has no `builds__parameters`,
    and one whose builds never listed a commit has no `builds__change_sets__items`. SQL models must
    read them regardless, so call this after a load: it applies the declared columns (hints) to the
    destination and gives new child tables dlt's linking columns. Idempotent; returns the tables it
    created. Works for any dlt pipeline with a SQL destination.
    """
    schema = pipeline.default_schema
    names = [t["name"] for t in schema.data_tables(seen_data_only=False)]
    created: list[str] = []
    if not names:
        return created
    with pipeline.destination_client() as client:
        before = dict(client.get_storage_tables(names))  # type: ignore[attr-defined]
        client.update_stored_schema(only_tables=names, force=True)
        after = dict(client.get_storage_tables(names))  # type: ignore[attr-defined]
        sql = client.sql_client  # type: ignore[attr-defined]
        for name in names:
            if before.get(name) or not after.get(name):
                continue
            created.append(name)
            if not schema.tables[name].get("parent"):
                continue
            table = client.prepare_load_table(name)
            for column, spec in _DLT_LINK_COLUMNS.items():
                if column not in after[name]:
                    data_type = client.type_mapper.to_destination_type(spec, table)  # type: ignore[attr-defined]
                    sql.execute_sql(
                        f"ALTER TABLE {sql.make_qualified_table_name(name)} "
                        f"ADD COLUMN {sql.escape_column_name(column)} {data_type}"
                    )
    return created
