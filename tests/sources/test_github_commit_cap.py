"""GitHub lists at most 250 commits of a pull request; repeated commits must not use up that cap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipelines.sources import github


class PagedCommits:
    """An API whose pages repeat the previous page's last commit, as a retried or shifted page does."""

    def __init__(self, pages: list[list[str]]) -> None:
        self._pages = pages

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        for page in self._pages:
            yield [{"sha": sha} for sha in page]


def test_repeated_commits_do_not_use_up_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(github, "PR_COMMITS_CAP", 4)
    monkeypatch.setattr(github, "_screen", lambda gate, page: (page, []))
    api = PagedCommits([["a", "b"], ["b", "c"], ["d"], ["e"]])
    pr = {"repo_full_name": "acme/x", "number": 7, "id": 70}
    rows, bad = github.pull_request_children(api, pr, "commits", gate=None)  # type: ignore[arg-type]
    assert {r["sha"] for r in rows} == {"a", "b", "c", "d"} and bad == []
    assert all(r["pull_request_number"] == 7 for r in rows)
