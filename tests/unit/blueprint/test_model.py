"""The blueprint contract: round trip, and validation errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shadowing.blueprint.model import Blueprint, blueprint_hash
from shadowing.errors import InputError
from tests.unit.blueprint.test_builder import build


@pytest.fixture
def payload() -> dict[str, Any]:
    return build().payload


def test_round_trip_is_lossless(payload: dict[str, Any]) -> None:
    assert Blueprint.from_dict(payload).to_dict() == payload
    assert Blueprint.from_dict(payload).content_hash() == blueprint_hash(payload)


def _break(payload: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(payload)
    node = broken
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return broken


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "field"), [
    (["services", "web", "count"], -1, "services.web.count"),
    (["services", "web", "count"], "3", "services.web.count"),
    (["services", "web", "count"], True, "services.web.count"),
    (["services", "web", "instance_type"], _DELETE, "services.web.instance_type"),
    (["services", "web", "ami"], None, "services.web.ami"),
    (["services", "web", "ports"], [70000], "services.web.ports[0]"),
    (["services", "web", "tier"], 0, "services.web.tier"),
    (["services", "web", "target_group", "name"], "x" * 33, "services.web.target_group.name"),
    (["primary_region"], "mars-1", "primary_region"),
    (["services", "web", "launch_tier"], "first", "services.web.launch_tier"),
    (["tiers"], [], "tiers"),
    (["shadow_region"], "us-east-1", "shadow_region"),
    (["schema_version"], 99, "schema_version"),
    (["launch_tiers"], [["db"], ["api", "cache"]], "services.web"),
    (["launch_tiers"], [["db", "api"], ["cache"], ["web"]], "services.api.tier"),
    (["launch_tiers"], [["db"], ["api", "cache", "ghost"], ["web"]], "launch_tiers[1]"),
    (["networking", "vpc", "cidr"], "10.0.0.0", "networking.vpc.cidr"),
    (["traffic", "strategy"], "random", "traffic.strategy"),
    (["traffic", "weighted_steps"], [50, 10, 100], "traffic.weighted_steps"),
    (["traffic", "records", 0, "failover"], "TERTIARY", "traffic.records[0].failover"),
    (["replication", 0, "action"], "s3_replication", "replication[0].action"),
    (["networking", "security_groups", "db", "ingress", 0, "from_service"], "nobody",
     "networking.security_groups.db.ingress[0].from_service"),
])
def test_validation_names_the_field(payload: dict[str, Any], path: list[Any], value: Any, field: str) -> None:
    if path[:2] == ["replication", 0]:
        payload["replication"].sort(key=lambda r: r["kind"] != "rds")
    with pytest.raises(InputError) as err:
        Blueprint.from_dict(_break(payload, path, value))
    assert err.value.field == field, str(err.value)


def test_not_an_object_is_an_input_error() -> None:
    with pytest.raises(InputError):
        Blueprint.from_dict(["not", "a", "blueprint"])


def test_a_cycle_split_over_tiers_is_rejected(payload: dict[str, Any]) -> None:
    payload["launch_tiers"] = [["db", "api"], ["cache"], ["web"]]
    payload["services"]["api"]["tier"] = 0
    with pytest.raises(InputError) as err:
        Blueprint.from_dict(payload)
    assert err.value.field == "launch_tiers" and "cycle-api" in str(err.value)
