"""Unit tests of the field-path contract utility, and a consistency check of the fixture catalogue."""

from __future__ import annotations

import json

import contract_catalogue as catalogue
import pytest

from pipelines.sandbox.contract import (
    align,
    compare,
    field_paths,
    kind_of,
    load_fixture,
    matches,
    recorded_interactions,
    select,
    string_kind,
)

# --- field_paths ---------------------------------------------------------------------------------


def test_field_paths_spell_nested_objects_and_lists():
    issue = {
        "user": {"login": "octocat"},
        "labels": [{"name": "bug"}],
        "changelog": {"histories": [{"items": [{"field": "status"}]}]},
    }
    paths = field_paths(issue)
    assert paths["user"] == {"object"}
    assert paths["user.login"] == {"string"}
    assert paths["labels"] == {"array"}
    assert paths["labels[]"] == {"object"}
    assert paths["labels[].name"] == {"string"}
    assert paths["changelog.histories[].items[].field"] == {"string"}
    assert "" not in paths


def test_top_level_list_is_a_list_of_items_merged_under_brackets():
    paths = field_paths([{"id": 1}, {"id": None, "draft": True}])
    assert paths == {"[]": {"object"}, "[].id": {"int", "null"}, "[].draft": {"bool"}}


def test_ints_and_floats_are_distinct_kinds():
    assert field_paths({"a": 1, "b": 1.0, "c": 0.5}) == {"a": {"int"}, "b": {"float"}, "c": {"float"}}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("2024-01-02T03:04:05Z", "string:iso8601-z"),
        ("2024-01-02T03:04:05.000Z", "string:iso8601-ms-z"),
        ("2024-01-02T03:04:05+00:00", "string:iso8601-offset"),
        ("2021-02-18T14:59:13.000+08:00", "string:iso8601-ms-offset"),
        ("2020-06-12T08:13:13.360+0800", "string:iso8601-ms-offset-nocolon"),
        ("2023-01-10T08:24:21.123456+00:00", "string:iso8601-us-offset"),
        ("2024-01-02T03:04:05", "string:iso8601-naive"),
        ("2024-01-02", "string:date"),
        ("2014-10-26_10-12-29", "string:jenkins-id-date"),
        ("2016-03-03 17:12:23 +0100", "string:datetime-space"),
        ("Wed, 26 Aug 2020 13:30:00 GMT", "string:rfc1123"),
        ("https://api.github.com/repos/o/r/issues{/number}", "string:url"),
        ("10a7135a04f71e6101f8b013aded8a662d08fd1f", "string:sha40"),
        ("", "string:empty"),
        ("2024-01-02 is a date", "string"),
        ("main", "string"),
    ],
)
def test_string_formats(text, kind):
    assert string_kind(text) == kind


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("timestamp", 1591950793000, "int:epoch-ms"),  # Jenkins build start
        ("startTimeMillis", 1414318349000, "int:epoch-ms"),  # wfapi
        ("time", 1486793881, "int:epoch-s"),  # Mixpanel properties.time
        ("$mp_api_timestamp_ms", 1684951135296, "int:epoch-ms"),
        ("created_at", 1704322488, "int:epoch-s"),  # Datadog SLO
        ("created_at", 1704322488000, "int:epoch-ms"),  # Datadog monitor
        ("start", 1666341883000000000, "int:epoch-ns"),  # Datadog CI
        ("times", 1704235800000.0, "float:epoch-ms"),  # Datadog SLO history
        ("id", 1486793881, "int"),  # a GitHub-sized id in the seconds window: no time word
        ("check_run_id", 54251022208, "int"),  # between the s and ms windows
        ("duration", 1_200_000_000_000, "int"),  # 20 minutes in ns would look like epoch ms
        ("endTimeMillis", 0, "int"),
        ("timestamp", True, "bool"),
    ],
)
def test_epoch_numbers_by_magnitude(key, value, kind):
    assert kind_of(value, key) == kind


def test_maps_collapse_child_keys():
    value = {"resources": {"core": {"limit": 5000}, "search": {"limit": 30, "used": 1}}}
    assert field_paths(value, maps=["resources"]) == {
        "resources": {"object"},
        "resources.*": {"object"},
        "resources.*.limit": {"int"},
        "resources.*.used": {"int"},
    }


def test_globs_only_star_is_special():
    assert matches("[].fields.customfield_10020", ["*[].fields.customfield_*"])
    assert matches("issues[].fields.customfield_10020", ["*[].fields.customfield_*"])
    assert matches("labels[].name", ["labels[].name"])
    assert not matches("labelsX.name", ["labels[].name"])
    assert not matches("labels[].name", ["labels"])


# --- compare -------------------------------------------------------------------------------------


def test_identical_payloads_have_no_problems():
    payload = [{"id": 1, "user": {"login": "a"}, "created_at": "2024-01-02T03:04:05Z"}]
    assert compare(payload, payload) == []


def test_missing_path_is_reported_by_name():
    problems = compare({"user": {"login": "a", "id": 1}}, {"user": {"login": "b"}})
    assert problems == ["missing: user.id (recorded int)"]


def test_kind_mismatch_is_reported():
    (problem,) = compare({"number": 7}, {"number": "7"})
    assert problem.startswith("kind mismatch: number:") and "int" in problem and "string" in problem


def test_time_format_and_unit_mismatches_are_reported():
    jira = {"created": "2020-06-12T08:13:13.360+0800"}
    assert compare(jira, {"created": "2020-06-12T00:13:13.360Z"}) != []
    assert compare(jira, {"created": "2020-06-12T08:13:13.360+0800"}) == []
    assert compare({"timestamp": 1591950793000}, {"timestamp": 1591950793}) != []  # s for ms
    assert compare({"time": 1486793881}, {"time": 1486793881000}) != []  # ms for s


def test_null_is_compatible_on_either_side():
    assert compare({"merged_at": None}, {"merged_at": "2024-01-02T03:04:05Z"}) == []
    assert compare({"merged_at": "2024-01-02T03:04:05Z"}, {"merged_at": None}) == []
    assert compare({"merged_at": None}, {}) == ["missing: merged_at (recorded null)"]


def test_a_recorded_object_needs_its_fields_somewhere_even_if_emulated_null():
    problems = compare({"milestone": {"title": "v1"}}, {"milestone": None})
    assert problems == ["missing: milestone.title (recorded string)"]


def test_optional_fields_are_compared_as_a_union_over_items():
    recorded = [{"id": 1, "closed_at": None}, {"id": 2, "closed_at": "2024-01-02T03:04:05Z", "merged_by": {}}]
    one_of_each = [{"id": 3, "closed_at": "2024-01-02T03:04:05Z"}, {"id": 4, "merged_by": {}}]
    assert compare(recorded, one_of_each) == []
    assert compare(recorded, [{"id": 3, "closed_at": None}]) == ["missing: [].merged_by (recorded object)"]


def test_nested_lists_are_unions_too():
    recorded = {"stages": [{"error": {"type": "x"}}, {"name": "build"}]}
    assert compare(recorded, {"stages": [{"name": "test"}, {"name": "deploy", "error": {"type": "y"}}]}) == []


def test_refined_kinds_are_accepted_where_the_recording_is_plain():
    assert compare({"body": "free text"}, {"body": "https://example.com"}) == []
    assert compare({"id": 5}, {"id": 1700000000000}) == []
    assert compare({"created_at": "2024-01-02T03:04:05Z"}, {"created_at": "yesterday"}) != []


def test_empty_string_is_a_no_value_for_any_string_kind():
    assert compare({"homepage": "https://x.org"}, {"homepage": ""}) == []
    assert compare({"goal": ""}, {"goal": "Ship it"}) == []
    assert compare({"homepage": "https://x.org"}, {"homepage": 0}) != []


def test_mixed_numbers_only_where_allowed():
    assert compare({"target": 99.5}, {"target": 99}) != []
    assert compare({"target": 99.5}, {"target": 99}, mixed_numbers=["target"]) == []
    assert compare({"values": [1, 87]}, {"values": [1.0, 87.5]}) != []
    assert compare({"values": [1, 87]}, {"values": [1.0, 87.5]}, mixed_numbers=["values[]"]) == []
    assert compare({"times": [1704235800000.0]}, {"times": [1704235800000]}, mixed_numbers=["*"]) == []
    assert compare({"times": [1704235800000.0]}, {"times": [1704235800]}, mixed_numbers=["*"]) != []


def test_maps_make_dynamic_keys_comparable():
    recorded = {"resources": {"core": {"limit": 5000, "used": 1}, "scim": {"limit": 15000, "used": 0}}}
    emulated = {"resources": {"core": {"limit": 5000, "used": 3}}}
    assert compare(recorded, emulated) == ["missing: resources.scim (recorded object)"] + [
        f"missing: resources.scim.{key} (recorded int)" for key in ("limit", "used")
    ]
    assert compare(recorded, emulated, maps=["resources"]) == []
    assert compare(recorded, {"resources": {"core": {"limit": 1}}}, maps=["resources"]) == [
        "missing: resources.*.used (recorded int)"
    ]


def test_ignore_drops_a_path_and_its_children():
    recorded = {"id": 1, "childReports": [{"child": {"url": "url1"}}]}
    assert compare(recorded, {"id": 2}, ignore=["childReports"]) == []
    assert (
        compare([{"fields": {"customfield_1": {"x": 1}}}], [{"fields": {}}], ignore=["*[].fields.customfield_*"]) == []
    )


def test_any_kind_checks_presence_only():
    recorded = {"ref": "10a7135a04f71e6101f8b013aded8a662d08fd1f"}
    assert compare(recorded, {"ref": "main"}) != []
    assert compare(recorded, {"ref": "main"}, any_kind=["ref"]) == []
    assert compare(recorded, {}, any_kind=["ref"]) == ["missing: ref (recorded string:sha40)"]


# --- loading and unwrapping ----------------------------------------------------------------------


def test_load_fixture_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n\n{"id": 2}\n')
    (tmp_path / "b.json").write_text('{"total_count": 0, "jobs": []}')
    (tmp_path / "b.headers.json").write_text(
        json.dumps({"_note": "", "request": {}, "status": 200, "headers": {"X-RateLimit-Limit": "60", "ETag": "x"}})
    )
    assert load_fixture(tmp_path / "a.jsonl") == [{"id": 1}, {"id": 2}]
    assert load_fixture(tmp_path / "b.json") == {"total_count": 0, "jobs": []}
    assert load_fixture(tmp_path / "b.headers.json") == {"x-ratelimit-limit": "60", "etag": "x"}


def test_recorded_interactions_unwrap():
    wrapper = {
        "_note": "...",
        "interactions": [
            {"request": {}, "status": 429, "headers": {"X-RateLimit-Reset": "3"}, "body": ""},
            {"request": {}, "status": 200, "headers": {}, "body": {"data": []}},
        ],
    }
    assert recorded_interactions(wrapper) == [
        {"status": 429, "headers": {"x-ratelimit-reset": "3"}, "body": ""},
        {"status": 200, "headers": {}, "body": {"data": []}},
    ]


def test_align_shapes():
    body = {"total_count": 1, "workflow_runs": [{"id": 1}]}
    assert select(body, "workflow_runs") == [{"id": 1}]
    assert align("response", {"r": 1}, body, "workflow_runs") == ({"r": 1}, body)
    assert align("items", [{"id": 2}], body, "workflow_runs") == ([{"id": 2}], [{"id": 1}])
    assert align("item", {"id": 2}, body, "workflow_runs") == ([{"id": 2}], [{"id": 1}])
    assert align("items", [{"id": 2}], [{"id": 1}], "") == ([{"id": 2}], [{"id": 1}])
    with pytest.raises(ValueError):
        align("items", [], body, None)


# --- the catalogue -------------------------------------------------------------------------------

ROOT = catalogue.FIXTURES_ROOT
CASES = [(ep, fx) for ep in catalogue.ENDPOINTS for fx in ep.fixtures]
CASE_IDS = [f"{ep.route} <- {fx.file}" for ep, fx in CASES]
needs_fixtures = pytest.mark.skipif(not ROOT.is_dir(), reason=f"real fixtures not found at {ROOT}")


def _compared(fixture) -> object:
    """The recorded side as `compare` sees it: a response body, or a list of items."""
    recorded = load_fixture(ROOT / fixture.file)
    return recorded if fixture.shape == "response" else align(fixture.shape, recorded, [], "")[0]


@needs_fixtures
@pytest.mark.parametrize(("endpoint", "fixture"), CASES, ids=CASE_IDS)
def test_catalogued_fixture_loads_and_matches_itself(endpoint, fixture):
    compared = _compared(fixture)
    assert compare(compared, compared, **endpoint.options(fixture)) == []
    if fixture.shape == "response" and fixture.status == 200 and endpoint.items_path is not None:
        assert isinstance(select(compared, endpoint.items_path), list)
    if fixture.shape != "response":
        assert isinstance(compared, list) and compared
    if fixture.headers:
        assert isinstance(load_fixture(ROOT / fixture.headers), dict)


@needs_fixtures
@pytest.mark.parametrize("endpoint", catalogue.ENDPOINTS, ids=[ep.route for ep in catalogue.ENDPOINTS])
def test_catalogued_globs_match_something(endpoint):
    """Catches typos: every ignore/any_kind/maps glob names at least one recorded path."""
    endpoint_paths: set[str] = set()
    for fixture in endpoint.fixtures:
        paths = set(field_paths(_compared(fixture)))
        endpoint_paths |= paths
        for pattern in fixture.ignore + fixture.any_kind:
            assert any(matches(path, [pattern]) for path in paths), (pattern, fixture.file)
    for pattern in endpoint.ignore + endpoint.any_kind + endpoint.maps:
        assert any(matches(path, [pattern]) for path in endpoint_paths), pattern


@needs_fixtures
def test_catalogue_covers_every_recording():
    fixtures = [fx for _, fx in CASES] + list(catalogue.ERROR_FIXTURES)
    named = {fx.file for fx in fixtures} | {fx.headers for fx in fixtures if fx.headers}
    on_disk = {path.relative_to(ROOT).as_posix() for path in ROOT.rglob("*.json*")}
    assert named == {name for name in on_disk if not name.endswith(".meta.json")}


@needs_fixtures
def test_catalogue_entries_are_consistent():
    for endpoint in catalogue.ENDPOINTS:
        assert endpoint.system in {"github", "jira", "jenkins", "datadog", "mixpanel"}
        assert endpoint.method in {"GET", "POST"} and endpoint.path.startswith("/")
        for fixture in endpoint.fixtures:
            assert fixture.file.startswith(f"{endpoint.system}/")
            assert fixture.shape == "response" or endpoint.items_path is not None
            assert fixture.file.endswith(".jsonl") == (fixture.shape == "items")
    for fixture in catalogue.ERROR_FIXTURES:
        assert fixture.status >= 400
        recorded = load_fixture(ROOT / fixture.file)
        if fixture.file.endswith(".recorded.json"):
            assert [i["status"] for i in recorded_interactions(recorded)] == [429, 429, 429, 200]
        else:
            assert isinstance(recorded, dict) and "message" in recorded
