"""The API's settings, resolved once from the environment when the app is created (never at import).

| variable | default | meaning |
|---|---|---|
| `OPSMAP_API_TOKEN` | (required) | the bearer token every `/api/v1/product-ops/…` request must present |
| `OPSMAP_WAREHOUSE` | `warehouse/data/opsmap.duckdb` | the published warehouse the API reads (read-only) |
| `OPSMAP_ANNOTATIONS` | `annotations.duckdb` beside the warehouse | the release-annotation store the API writes |
| `OPSMAP_API_STALE_HOURS` | `26` | the health endpoint says `stale` past this age (a nightly run plus slack) |
| `OPSMAP_API_CACHE_ENTRIES` | `2048` | responses cached per warehouse version (0: compute every request) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.settings import Paths

MIN_TOKEN_LENGTH = 16  # a shorter secret is guessable; refuse it rather than serve with it


class ApiConfigError(RuntimeError):
    """The API cannot start with this configuration; the message says what to set."""


@dataclass(frozen=True)
class ApiSettings:
    """Where the API reads and writes, and the secret it checks. `repr` never shows the token."""

    published: Path
    annotations: Path
    token: str = field(repr=False)
    stale_after_hours: float = 26.0
    cache_entries: int = 2048

    def __post_init__(self) -> None:
        if len(self.token) < MIN_TOKEN_LENGTH:
            raise ApiConfigError(
                f"OPSMAP_API_TOKEN must be set to a secret of at least {MIN_TOKEN_LENGTH} characters "
                "(e.g. `export OPSMAP_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`)"
            )

    @classmethod
    def from_env(cls) -> ApiSettings:
        """Read the settings from the environment (see the module docstring)."""
        published = Paths.from_env().published
        annotations = os.environ.get("OPSMAP_ANNOTATIONS")
        return cls(
            published=published,
            annotations=Path(annotations).expanduser().resolve() if annotations else default_annotations(published),
            token=os.environ.get("OPSMAP_API_TOKEN", ""),
            stale_after_hours=float(os.environ.get("OPSMAP_API_STALE_HOURS") or 26.0),
            cache_entries=int(os.environ.get("OPSMAP_API_CACHE_ENTRIES") or 2048),
        )


def default_annotations(published: Path) -> Path:
    """The annotation store's default place: `annotations.duckdb` in the published warehouse's folder."""
    return published.parent / "annotations.duckdb"
