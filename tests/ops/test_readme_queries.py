"""Every query the README's "Querying the warehouse" section shows runs against a sandbox-built warehouse."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.settings import PROJECT_ROOT
from pipelines.sql import run_query

README = PROJECT_ROOT / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _example_queries() -> list[str]:
    """The statements of the section's ```sql blocks, each with its leading comment."""
    blocks = re.findall(r"```sql\n(.*?)```", _section("Querying the warehouse"), flags=re.DOTALL)
    return [s.strip() for block in blocks for s in block.split(";") if s.strip()]


def _example_commands() -> list[list[str]]:
    """The `opsmap sql "…"` command lines of the section's ```bash blocks, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)```", _section("Querying the warehouse"), flags=re.DOTALL)
    commands = []
    for line in "\n".join(blocks).splitlines():
        words = shlex.split(line, comments=True)
        if len(words) > 2 and words[0].endswith("opsmap") and words[1] == "sql":
            commands.append(words[1:])
    return commands


def test_the_readme_shows_five_example_queries() -> None:
    queries = _example_queries()
    assert len(queries) >= 5
    # Each says what it answers, in a leading comment.
    assert all(q.startswith("--") for q in queries)


@pytest.mark.parametrize("query", _example_queries(), ids=lambda q: q.splitlines()[0][3:40])
def test_each_readme_query_answers_on_a_built_warehouse(query: str, built_warehouse: dict) -> None:
    published = built_warehouse["paths"].published
    assert built_warehouse["result"].success, "the session's nightly run failed; nothing to query"
    rows = json.loads(run_query(published, query, "json"))
    assert rows, "the example returns no rows on the sandbox world"
    # No column is null on every row: each one the example selects carries an answer.
    assert [c for c in rows[0] if all(r[c] is None for r in rows)] == []


def test_the_readme_commands_run_through_the_cli(built_warehouse: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(built_warehouse["paths"].published))
    commands = _example_commands()
    assert len(commands) >= 2
    for args in commands:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
        assert result.output.strip(), args
    # and a README query, comment and all, after `--` as the README says
    first = _example_queries()[0]
    result = CliRunner().invoke(main, ["sql", "--format", "csv", "--", first])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.strip().splitlines()
    assert header.startswith("metric,") and lines


def test_the_readme_queries_paste_into_the_interactive_shell(
    built_warehouse: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(built_warehouse["paths"].published))
    queries = _example_queries()
    pasted = "\n".join(f"{q};" for q in queries) + "\n\n.quit\n"
    result = CliRunner().invoke(main, ["sql"], input=pasted)
    assert result.exit_code == 0, result.output
    assert "error:" not in result.output
    assert result.output.count("shape: (") == len(queries)  # one table per statement
