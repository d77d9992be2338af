"""Extraction: each dlt source surfaced as Dagster assets `raw_<system>/<table>` (dagster-dlt).

The decorator needs a source object to list its resources when the code location loads, but the
real configuration (base URLs, tokens) must only be resolved at run time: a missing token must not
break the UI, and a source object cannot be run twice in one process (stack notes 4d). So each
system gets a spec-only source for the asset graph and a fresh, fully configured one per run.
"""

import importlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
from dagster import AssetExecutionContext, AssetsDefinition, AssetSpec
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.extract.source import DltSource

from pipelines.resources import SourcesResource, Warehouse
from pipelines.settings import SYSTEMS, Paths
from pipelines.sources.declared_tables import create_declared_tables

SOURCE_FACTORIES: dict[str, str] = {system: f"pipelines.sources.{system}:{system}_source" for system in SYSTEMS}

# Placeholders that let each source list its resources without configuration; never used to connect.
_SPEC = "spec-only"
_SPEC_DIR = Path(tempfile.gettempdir()) / "opsmap-spec-only"
SPEC_ARGS: dict[str, dict[str, Any]] = {
    "jira": {"base_url": "http://spec-only", "email": _SPEC, "api_token": _SPEC, "projects": ["SPEC"]},
    "github": {"base_url": "http://spec-only", "access_token": _SPEC, "org": _SPEC},
    "jenkins": {"base_url": "http://spec-only", "username": _SPEC, "api_token": _SPEC},
    "datadog": {"base_url": "http://spec-only", "api_key": _SPEC, "application_key": _SPEC},
    "mixpanel": {"base_url": "http://spec-only", "api_secret": _SPEC, "project_id": _SPEC},
}


for _args in SPEC_ARGS.values():
    _args["start_date"] = "2000-01-01"


def source_factory(system: str) -> Callable[..., DltSource]:
    module_name, _, attr = SOURCE_FACTORIES[system].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def raw_pipeline(system: str, paths: Paths) -> dlt.Pipeline:
    """The dlt pipeline loading one system into `raw_<system>` of the build warehouse."""
    return dlt.pipeline(
        pipeline_name=f"opsmap_{system}",
        destination=dlt.destinations.duckdb(str(paths.build)),
        dataset_name=f"raw_{system}",
        pipelines_dir=str(paths.dlt_dir / "pipelines"),
    )


class RawTranslator(DagsterDltTranslator):
    """Asset key = the table dlt writes: `raw_<system>/<resource>`, grouped per system, no phantom deps."""

    def __init__(self, system: str) -> None:
        self.system = system

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        resource = data.resource
        doc = (resource.__doc__ or "").strip() if resource.__doc__ != type(resource).__doc__ else ""
        description = doc or f"`raw_{self.system}.{resource.name}` as loaded by dlt from the {self.system} API."
        return (
            super()
            .get_asset_spec(data)
            .replace_attributes(
                key=[f"raw_{self.system}", resource.name],
                deps=[],
                group_name=f"raw_{self.system}",
                description=f"{description}\n\nWrite disposition: {resource.write_disposition}.",
            )
        )


def extraction_asset(system: str) -> AssetsDefinition:
    factory = source_factory(system)

    @dlt_assets(
        dlt_source=factory(**SPEC_ARGS[system]),
        dlt_pipeline=dlt.pipeline(
            pipeline_name=f"opsmap_{system}",
            destination=dlt.destinations.duckdb(str(_SPEC_DIR / "spec-only.duckdb")),
            dataset_name=f"raw_{system}",
            pipelines_dir=str(_SPEC_DIR),
        ),
        name=f"extract_{system}",
        dagster_dlt_translator=RawTranslator(system),
        op_tags={"opsmap/system": system},
    )
    def _extract(
        context: AssetExecutionContext, dlt: DagsterDltResource, warehouse: Warehouse, sources: SourcesResource
    ) -> Any:
        pipeline = raw_pipeline(system, warehouse.paths)
        # High-volume resources yield Arrow; Parquet loader files load ~75x faster than insert_values.
        yield from dlt.run(context=context, dlt_source=factory(), dlt_pipeline=pipeline, loader_file_format="parquet")
        created = create_declared_tables(pipeline)
        if created:
            context.log.info(f"created empty declared tables in raw_{system}: {', '.join(created)}")

    return _extract


def extraction_assets(systems: tuple[str, ...] = SYSTEMS) -> list[AssetsDefinition]:
    return [extraction_asset(s) for s in systems]
