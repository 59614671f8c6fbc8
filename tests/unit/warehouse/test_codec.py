"""Hashing and time helpers of the warehouse (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shadowing.blueprint.diff import diff_blueprints
from shadowing.blueprint.model import blueprint_hash
from shadowing.warehouse.blueprints import blueprint_content_hash
from shadowing.warehouse.codec import content_hash, utc

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                       max_size=3), max_leaves=10)


@given(st.dictionaries(st.text(max_size=4), json_values, max_size=5))
def test_hash_ignores_key_order(payload: dict) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert content_hash(payload) == content_hash(reordered)


def test_blueprint_hash_ignores_provenance_and_agrees_with_the_model() -> None:
    a = {"services": {"web": {"count": 1}}, "provenance": {"run_id": "a"}}
    b = {"provenance": {"run_id": "b"}, "services": {"web": {"count": 1}}}
    assert blueprint_content_hash(a) == blueprint_content_hash(b) == blueprint_hash(a)
    assert blueprint_content_hash({"services": {"web": {"count": 2}}}) != blueprint_content_hash(a)


def test_utc() -> None:
    naive = datetime(2026, 1, 1, 12)
    assert utc(naive) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert utc(datetime(2026, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))) == datetime(2026, 1, 1, 12,
                                                                                            tzinfo=UTC)
    assert utc(None) is None


def test_diff_summary() -> None:
    old = {"services": {"a": {"count": 1, "ports": [80]}, "b": {"count": 1}}, "traffic": {"x": 1}}
    new = {"services": {"a": {"count": 2, "ports": [80]}, "c": {"count": 1}}, "traffic": {"x": 2}}
    diff = diff_blueprints(old, new)
    assert diff == {"first": False, "services_added": ["c"], "services_removed": ["b"],
                    "services_changed": {"a": {"count": {"from": 1, "to": 2}}}, "sections_changed": ["traffic"]}
    assert diff_blueprints(None, new)["first"] is True
    assert diff_blueprints(new, new)["services_changed"] == {}
