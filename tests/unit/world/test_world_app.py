from __future__ import annotations

import pytest

from shadowing.world.app import SHOPFRONT, build_app, generated_app


def test_shopfront_true_graph_has_the_required_traps() -> None:
    assert len(SHOPFRONT.services) == 13
    assert ["cart", "recommendation"] in SHOPFRONT.cycles()
    assert ["checkout", "payment"] in SHOPFRONT.cycles()
    assert SHOPFRONT.traffic_only_edges()  # at least one edge visible only in traffic
    assert not SHOPFRONT.traffic_only_edges() & SHOPFRONT.config_edges()
    db_callers = {a for a, b in SHOPFRONT.edge_pairs() if b == "db"}
    assert len(db_callers) >= 3  # shared database
    broker_users = {a for a, b in SHOPFRONT.edge_pairs() if b == "broker"}
    assert {"checkout", "notification"} <= broker_users
    assert any(s.port > 32768 for s in SHOPFRONT.services)  # listening above the ephemeral floor


def test_generated_app_is_deterministic_layered_and_cyclic() -> None:
    a, b = generated_app(200, seed=3), generated_app(200, seed=3)
    assert a == b and len(a.services) == 200
    assert a != generated_app(200, seed=4)
    assert len(a.cycles()) >= 1
    called = {t for _, t in a.edge_pairs()}
    first_layer = set(a.names[: round(200 ** 0.5)])
    assert set(a.names) - first_layer <= called  # every deeper service has a caller


def test_build_app_overrides_instances_but_not_managed_db() -> None:
    app = build_app(None, 0, 5)
    assert app.service("catalog").instances == 5 and app.service("db").managed
    assert generated_app(3).cycles() == [["svc-0000", "svc-0001"]]
    with pytest.raises(ValueError):
        generated_app(0)
