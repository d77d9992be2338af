"""Request and response bodies of the product-ops API (they are its OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

FEATURE_ID_PATTERN = r"^[A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,6}$"
"""A Jira epic key, e.g. PAY-3 (project keys are 2–10 characters)."""
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
"""A release version such as 1.4.0, v2.0.0-rc.1 or 2026.03."""

FeatureId = Annotated[str, StringConstraints(pattern=FEATURE_ID_PATTERN)]


def _iso_text(value: object) -> object:
    """Dates arrive as `YYYY-MM-DD` text; a number is refused (pydantic would read it as seconds since 1970)."""
    if value is not None and not isinstance(value, str | dt.date):
        raise ValueError("expected a date as YYYY-MM-DD text")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_text)]


def _json_number(value: object) -> object:
    """A count arrives as a JSON number; text and booleans are refused rather than converted."""
    if isinstance(value, str | bool):
        raise ValueError("expected a number")
    return value


PerKind = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_json_number)]
"""How many rows per kind: a JSON number (the bounds precede the validator, so the spec shows them)."""


class Problem(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


class Distribution(BaseModel):
    """Summary of a duration: how many values, their median and upper percentiles (linear interpolation)."""

    sample: int = Field(description="Number of values behind the figures.")
    median: float | None = None
    p75: float | None = None
    p90: float | None = None


class Feature(BaseModel):
    feature_id: str = Field(description="The Jira epic key.")
    project_key: str
    summary: str | None
    status: str = Field(description="`todo`, `in_progress` or `done`.")
    created_at: datetime


# --- development ----------------------------------------------------------------------------------


class IssueCounts(BaseModel):
    total: int
    by_status: dict[str, int] = Field(description="Issues per normalised status (`todo`, `in_progress`, `done`).")
    by_type: dict[str, int] = Field(description="Issues per type (Story, Task, Bug).")
    done_ratio: float | None = Field(description="Done issues / all issues; null without issues.")


class PullRequestCounts(BaseModel):
    total: int = Field(description="Pull requests linked to the feature's issues.")
    by_state: dict[str, int] = Field(description="Per state: `open`, `closed` (not merged), `merged`.")
    deployed: int = Field(description="Merged PRs that reached production.")
    time_to_first_review_hours: Distribution
    time_to_merge_hours: Distribution


class FlakyTest(BaseModel):
    service: str | None
    suite: str
    class_name: str
    test_name: str
    runs: int = Field(description="Runs of the test (in the scope of the request).")
    failed_runs: int
    flaky_commits: int = Field(description="Commits on which the test both failed and passed.")
    commits: int = Field(description="Commits on which the test ran.")
    flake_rate: float = Field(description="flaky_commits / commits.")


class QualitySignals(BaseModel):
    bugs: int
    open_bugs: int
    escaped_bugs: int = Field(description="Bugs that reached production (quality.defects.escaped).")
    test_runs: int = Field(description="Test-case runs on the commits of the feature's pull requests.")
    failed_test_runs: int
    flaky_tests: list[FlakyTest] = Field(description="Tests that were flaky on the feature's commits.")


class Delivery(BaseModel):
    first_deployed_at: datetime | None
    first_released_at: datetime | None
    release_deployment_id: str | None
    time_to_market_days: float | None


class Development(BaseModel):
    """A feature's development progress."""

    feature: Feature
    issues: IssueCounts
    pull_requests: PullRequestCounts
    cycle_time_hours: Distribution = Field(description="Issues: first in-progress → first done.")
    lead_time_hours: Distribution = Field(description="Issues: created → first done.")
    change_lead_time_hours: Distribution = Field(
        description="DORA lead time of the feature's deployed PRs: first commit → production deployment finished."
    )
    delivery: Delivery
    quality: QualitySignals


# --- analytics ------------------------------------------------------------------------------------


class Adoption(BaseModel):
    window_start: date
    window_end: date
    window_complete: bool
    feature_users: int
    active_users: int
    adoption_rate: float | None
    adopted: bool | None = Field(description="Reached the adoption threshold; null while the window is open.")


class Usage(BaseModel):
    first_day: date | None = Field(description="First day with an event of the feature.")
    last_day: date | None
    events: int
    users: int = Field(description="Distinct users of the feature, all time.")
    events_last_28_days: int
    users_last_28_days: int
    users_since_release: int | None = Field(description="Distinct users after the release day; null if unreleased.")


class EventShare(BaseModel):
    all_time: float | None = Field(description="The feature's events / all events mapped to a feature.")
    last_28_days: float | None


class TrendWeek(BaseModel):
    week_start: date = Field(description="Monday of the ISO week.")
    events: int
    users: int = Field(description="Distinct users that week.")


class Trend(BaseModel):
    weeks: list[TrendWeek] = Field(description="The last complete ISO weeks of data, oldest first (empty weeks: 0).")
    last_4_weeks_events: int
    previous_4_weeks_events: int
    change_pct: float | None = Field(description="(last 4 weeks − previous 4) / previous 4 × 100.")
    direction: Literal["rising", "falling", "flat", "no_data"] = Field(
        description="rising/falling when the change exceeds ±10 %, else flat."
    )


class Analytics(BaseModel):
    """A feature's usage."""

    feature: Feature
    data_through: date | None = Field(description="Last day of usage data in the warehouse.")
    released_at: datetime | None
    adoption: Adoption | None = Field(description="Adoption after release; null when not released.")
    usage: Usage
    share_of_tracked_events: EventShare
    trend: Trend


# --- releases -------------------------------------------------------------------------------------


class ReleaseIn(BaseModel):
    """A release annotation: when a version shipped and which features it carried."""

    model_config = ConfigDict(extra="forbid")

    date: IsoDate = Field(description="Release day (UTC).")
    features: list[FeatureId] = Field(
        default_factory=list,
        max_length=200,
        json_schema_extra={"uniqueItems": True},
        description="Epic keys it carried; each must be a feature in the warehouse (else 404).",
    )
    notes: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _unique_features(self) -> ReleaseIn:
        if len(set(self.features)) != len(self.features):
            raise ValueError("features must not repeat")
        return self


class WarehouseRelease(BaseModel):
    release_id: str = Field(description="github:release:<id> or jira:version:<id>.")
    system: str
    scope: str = Field(description="Repository (GitHub) or Jira project.")
    name: str
    released_at: datetime | None
    is_released: bool | None


class ReleaseAnnotation(BaseModel):
    version: str
    date: dt.date
    features: list[str]
    notes: str | None
    created_at: datetime
    updated_at: datetime


class ReleaseOut(BaseModel):
    """A release annotation and the Jira/GitHub releases of the same version."""

    version: str
    annotation: ReleaseAnnotation | None
    status: Literal["created", "updated", "unchanged"] | None = Field(
        default=None, description="What the POST did (null on GET)."
    )
    matching_releases: list[WarehouseRelease] = Field(
        description="Warehouse releases whose name or tag is the version (a leading `v` and a name prefix such as "
        "`Release ` or `PAY ` ignored, case-insensitive)."
    )


# --- quality --------------------------------------------------------------------------------------


class KeyCheck(BaseModel):
    columns: list[str]
    passed: bool
    duplicate_keys: int
    null_keys: int
    sample: list[dict[str, str | int | float | bool | None]] = Field(description="A few duplicated keys.")


class ContractCheck(BaseModel):
    passed: bool
    failures: int
    failed_checks: list[str]
    failure_cases: list[dict[str, str]]


class TableResult(BaseModel):
    table: str
    rows: int
    passed: bool
    primary_key: KeyCheck
    contract: ContractCheck


class ValidateOut(BaseModel):
    passed: bool
    warehouse_published_at: datetime
    tables: list[TableResult]


# --- performance ----------------------------------------------------------------------------------

RecommendationKind = Literal["lead_time_bottleneck", "failing_job", "failing_test", "low_adoption"]
RECOMMENDATION_KINDS: tuple[str, ...] = get_args(RecommendationKind)
"""The kinds of `kpi.recommendations` (`pipelines/insights/recommendations.py`), in the order they are served."""

RETIRED_WINDOW = (
    "`since` and `until` are no longer accepted: the recommendations cover one window, the KPIs' current one "
    "(`period_start`–`period_end` in the answer), as the last pipeline run computed them"
)


class OptimizeIn(BaseModel):
    """Which recommendations to return (all of them by default)."""

    model_config = ConfigDict(extra="forbid")

    kinds: (
        Annotated[
            list[RecommendationKind],
            Field(min_length=1, max_length=len(RECOMMENDATION_KINDS), json_schema_extra={"uniqueItems": True}),
        ]
        | None
    ) = Field(default=None, description="Only these kinds (default: every kind).")
    subject: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="Only recommendations whose subject contains this text, case-insensitively: a service "
        "(`payments-api` matches its lead-time row and its CI pipelines, e.g. `payments-api · CI`), a CI pipeline, "
        "a test class or a feature key.",
    )
    service: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="Only recommendations about this service (its repository's name, case-insensitively): its "
        "lead-time row, CI pipelines and tests; features belong to no service.",
    )
    top: PerKind | None = Field(
        default=None,
        description="At most this many per kind, the most pressing first (lowest `rank` among those matching the "
        "other filters); default: all.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_window(cls, data: object) -> object:
        # The endpoint once computed its figures over a requested window; say so rather than "extra input".
        if isinstance(data, dict) and {"since", "until"} & data.keys():
            raise ValueError(RETIRED_WINDOW)
        return data

    @model_validator(mode="after")
    def _unique_kinds(self) -> OptimizeIn:
        if self.kinds is not None and len(set(self.kinds)) != len(self.kinds):
            raise ValueError("kinds must not repeat")
        return self


class Recommendation(BaseModel):
    """One row of `kpi.recommendations`: a bottleneck and the figures it rests on."""

    kind: str = Field(
        description="`lead_time_bottleneck` (slowest lead-time phase of a service), `failing_job` (CI pipeline with "
        "the most failed builds), `failing_test` (test case with the most failed runs) or `low_adoption` (released "
        "feature below the adoption threshold)."
    )
    rank: int = Field(description="Rank within the kind (1 = most pressing).")
    subject: str = Field(description="Service, CI pipeline, test class or feature.")
    service: str | None = Field(description="The service the subject belongs to; null for features.")
    metric: str = Field(description="What `value` measures, e.g. `deploy_hours_median`, `failed_builds`.")
    value: float = Field(description="The figure the recommendation rests on.")
    reference_value: float | None = Field(
        description="What it is compared with: the median lead time, the failure rate, the adoption threshold."
    )
    unit: str = Field(description="Unit of `value`.")
    sample_size: int = Field(description="Items behind `value` (changes, builds, test runs, active users).")
    period_start: date = Field(description="First day of the window (the KPIs' current window).")
    period_end: date = Field(description="Last day of the window (inclusive).")
    recommendation: str = Field(description="The recommendation in words, with its figures.")
    evidence: dict[str, Any] = Field(description="Every figure behind the recommendation (the table's JSON, parsed).")


class OptimizeOut(BaseModel):
    """The rows of `kpi.recommendations` that match the request, as the last pipeline run computed them."""

    period_start: date | None = Field(description="First day of the window the table covers; null when it is empty.")
    period_end: date | None = Field(description="Last day of that window (inclusive).")
    total_rows: int = Field(description="Rows in kpi.recommendations, before the request's filters.")
    recommendations: list[Recommendation] = Field(
        description="Matching rows, by kind (lead time, CI pipelines, tests, adoption), then rank."
    )


# --- KPIs and health ------------------------------------------------------------------------------


class SuccessMetric(BaseModel):
    metric: str
    unit: str
    direction: str
    baseline_value: float | None
    baseline_sample: int
    current_value: float | None
    current_sample: int
    improvement_pct: float | None
    target: float
    target_kind: str
    met: bool | None
    definition: str
    null_reason: str | None


class DoraPeriod(BaseModel):
    period_start: date
    period_end: date
    days: int
    deployments: int
    deployment_frequency_per_day: float | None
    changes: int
    lead_time_hours_median: float | None
    change_failures: int
    change_failure_rate: float | None
    incidents_resolved: int
    time_to_restore_hours_median: float | None
    failed_deployment_recovery_hours_median: float | None
    deployment_rework_rate: float | None
    deployment_frequency_tier: str | None
    lead_time_tier: str | None
    change_failure_tier: str | None
    recovery_tier: str | None
    performance_tier: str | None
    null_reasons: str | None


class Dora(BaseModel):
    baseline: DoraPeriod | None
    current: DoraPeriod | None


class Kpis(BaseModel):
    success_metrics: list[SuccessMetric]
    dora: Dora


class Health(BaseModel):
    status: Literal["ok", "stale"]
    warehouse: str = Field(description="File name of the published warehouse.")
    published_at: datetime = Field(description="When the published file was last replaced.")
    age_hours: float = Field(description="Hours since then.")
    stale_after_hours: float
    latest_data_at: datetime | None = Field(description="Latest event time found in the marts.")
    latest_by_source: dict[str, datetime | None]
    annotations: int = Field(description="Release annotations stored.")
