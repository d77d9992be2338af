"""The `opsmap` command line: run the pipeline, serve the sandbox, query the warehouse."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import click

from pipelines.settings import Paths, ensure_dagster_home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
def main(verbose: bool) -> None:
    """opsmap: Jira, GitHub, Jenkins, Datadog and Mixpanel linked into delivery and product KPIs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        # Library chatter (dlt's schema-inference notes, Dagster's beta/supersession notices) is for
        # developers; `-v` shows it. Errors are always shown.
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
        warnings.filterwarnings("ignore", module="dagster")
        warnings.filterwarnings("ignore", category=UserWarning, module="dlt")


# --- run ------------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--sandbox-seed", default=42, show_default=True, help="Sandbox world seed (used when no source is configured)."
)
@click.option("--sandbox-scale", default=1.0, show_default=True, help="Sandbox world scale.")
@click.option("--sandbox-as-of", default=None, help="Serve the sandbox world as of this ISO date/time.")
@click.option("--select", "selection", default=None, help="Dagster asset selection (default: the whole `nightly` job).")
def run(sandbox_seed: int, sandbox_scale: float, sandbox_as_of: str | None, selection: str | None) -> None:
    """Materialise the `nightly` job in-process: extract, build models and KPIs, check, publish.

    With no source configured (no SOURCES__<SYSTEM>__BASE_URL), the built-in sandbox is started
    and all five systems are extracted from it over HTTP.
    """
    from pipelines.runner import print_summary, run_nightly

    ensure_dagster_home()
    started = time.perf_counter()
    result = run_nightly(
        sandbox={"sandbox_seed": sandbox_seed, "sandbox_scale": sandbox_scale, "sandbox_as_of": sandbox_as_of},
        selection=selection,
    )
    print_summary(result, time.perf_counter() - started)
    sys.exit(0 if result.success else 1)


@main.command()
@click.option("--start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First UTC day, YYYY-MM-DD.")
@click.option("--end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day (inclusive), YYYY-MM-DD.")
def backfill(start: datetime, end: datetime) -> None:
    """Rebuild the daily-partitioned usage tables for START–END, check them and publish.

    The days are rebuilt from the warehouse's upstream tables (nothing is extracted), one query
    for the whole range; other days are kept. Running it twice gives the same tables.
    """
    from pipelines.partitions import checked_range
    from pipelines.runner import print_summary, run_backfill

    try:
        days = checked_range(start.date(), end.date())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    build = Paths.from_env().build
    if not build.exists():
        raise click.ClickException(f"no warehouse to backfill at {build}: run `opsmap run` first")
    ensure_dagster_home()
    click.echo(f"Backfilling {days[0]} – {days[1]} ({(days[1] - days[0]).days + 1} days) …", err=True)
    started = time.perf_counter()
    result = run_backfill(*days)
    print_summary(result, time.perf_counter() - started, command="opsmap backfill", headline=False)
    sys.exit(0 if result.success else 1)


# --- sandbox --------------------------------------------------------------------------------------


@main.group()
def sandbox() -> None:
    """The built-in simulated organisation and its API emulators."""


def _world_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--end", default=None, help="Last day of the world (exclusive), YYYY-MM-DD; default 2026-11-01.")(
        f
    )
    f = click.option("--scale", default=1.0, show_default=True, help="Volume multiplier (teams multiply above 1).")(f)
    f = click.option("--seed", default=42, show_default=True, help="World seed: same seed, same world.")(f)
    return f


def _config(seed: int, scale: float, end: str | None):  # type: ignore[no-untyped-def]
    from datetime import date

    from pipelines.sandbox.world import DEFAULT_END, WorldConfig

    return WorldConfig(seed=seed, scale=scale, end=date.fromisoformat(end) if end else DEFAULT_END)


@sandbox.command("serve")
@_world_options
@click.option("--port", default=8900, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--as-of", default=None, help="Serve the world as it stood at this ISO date/time.")
@click.option("--faults", default=None, help="Fault spec, e.g. rate_limit=0.05,server_error=0.02,truncate=0.01.")
@click.option("--fault-seed", default=1, show_default=True, help="Seed of the fault draws (reproducible faults).")
@click.option("--access-log", type=click.Path(path_type=Path), default=None, help="Append one JSON line per request.")
@click.option(
    "--env-file", type=click.Path(path_type=Path), default=None, help="Write the KEY=value configuration here."
)
def sandbox_serve(
    seed: int,
    scale: float,
    end: str | None,
    port: int,
    as_of: str | None,
    faults: str | None,
    fault_seed: int,
    access_log: Path | None,
    env_file: Path | None,
) -> None:
    """Serve all five emulated APIs on 127.0.0.1 until interrupted.

    Prints (and with --env-file writes) the SOURCES__<SYSTEM>__… lines that point `opsmap run`
    at this world: `set -a; . ./sandbox.env; set +a; opsmap run`.
    """
    import signal

    from pipelines.sandbox.faults import FaultPlan, parse_fault_spec
    from pipelines.sandbox.generate import generate_world
    from pipelines.sandbox.server import SandboxServer, parse_as_of, write_env_file

    try:
        plan = FaultPlan(parse_fault_spec(faults), seed=fault_seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from exc
    world = generate_world(_config(seed, scale, end))
    server = SandboxServer(world, port=port, as_of=parse_as_of(as_of), faults=plan, access_log=access_log)
    env = server.env()
    for key, value in env.items():
        click.echo(f"{key}={value}")
    if env_file:
        write_env_file(env_file, env)
    click.echo(f"# sandbox serving {', '.join(server.emulators)} at {server.url} (Ctrl-C to stop)", err=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@sandbox.command("truth")
@_world_options
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the Parquet files.")
@click.option("--as-of", default=None, help="The truth as it stood at this ISO date/time.")
def sandbox_truth(seed: int, scale: float, end: str | None, out: Path, as_of: str | None) -> None:
    """Write the world's ground truth as Parquet, one file per entity (see pipelines/sandbox/truth.py)."""
    from pipelines.sandbox.generate import generate_world
    from pipelines.sandbox.server import parse_as_of
    from pipelines.sandbox.truth import write_truth

    world = generate_world(_config(seed, scale, end))
    for path, rows in write_truth(world, out, parse_as_of(as_of)):
        click.echo(f"{path}  {rows} rows")


# --- report ---------------------------------------------------------------------------------------


@main.command()
def report() -> None:
    """Print the path of the KPI report (written by every successful run)."""
    from pipelines.assets.report import REPORT_NAME

    path = Paths.from_env().reports / REPORT_NAME
    if not path.exists():
        raise click.ClickException(f"no report at {path}: run `make demo` (or `opsmap run`) first")
    click.echo(str(path))


# --- sql ------------------------------------------------------------------------------------------


@main.command()
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def sql(query: str | None, fmt: str) -> None:
    """Query the published warehouse read-only; with no QUERY, open an interactive shell."""
    from pipelines.sql import interactive_shell, run_query

    published = Paths.from_env().published
    if not published.exists():
        raise click.ClickException(f"no published warehouse at {published}: run `make demo` (or `opsmap run`) first")
    if query is None:
        interactive_shell(published)
        return
    try:
        click.echo(run_query(published, query, fmt), nl=False)
    except Exception as exc:  # duckdb errors carry a clear message already
        raise click.ClickException(str(exc)) from exc


# --- api ------------------------------------------------------------------------------------------


@main.command()
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1.")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="Log one line per request.")
def api(port: int, access_log: bool) -> None:
    """Serve the product-ops API (/api/v1/product-ops/…, OpenAPI at /docs) over the published warehouse.

    Requests need `Authorization: Bearer $OPSMAP_API_TOKEN`; set that secret before starting.
    """
    from pipelines.api import serve
    from pipelines.api.config import ApiConfigError

    logging.getLogger("opsmap.api").setLevel(logging.INFO)
    try:
        serve(port=port, access_log=access_log)
    except ApiConfigError as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
