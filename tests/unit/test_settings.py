"""Deployment settings: region pairs from the environment and the one region-name check every part uses."""

from __future__ import annotations

import pytest

from shadowing.blueprint.model import Blueprint
from shadowing.errors import InputError
from shadowing.settings import is_region_name, region_pairs
from tests.unit.blueprint.test_builder import build


@pytest.mark.parametrize("name", ["us-east-1", "eu-west-3", "us-gov-west-1", "cn-north-1", "cn-northwest-1",
                                  "us-iso-east-1", "us-isob-east-1", "eu-isoe-west-1", "ap-southeast-5",
                                  "mx-central-1", "il-central-1", "eusc-de-east-1"])
def test_every_kind_of_aws_region_name_is_one(name: str) -> None:
    assert is_region_name(name)


@pytest.mark.parametrize("name", ["us-east1", "useast-1", "us-east", "US-EAST-1", " us-east-1", "us-east-1 ",
                                  "u-east-1", "us-east-1a", "us-east-100", "", "us_east_1", "us-east-1\n"])
def test_misspelt_region_names_are_not(name: str) -> None:
    assert not is_region_name(name)


def test_region_pairs_keep_order_and_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", " us-east-1 = us-west-2 ,, eu-west-1=eu-central-1")
    assert list(region_pairs().items()) == [("us-east-1", "us-west-2"), ("eu-west-1", "eu-central-1")]
    monkeypatch.setenv("SHADOWING_REGION_PAIRS", "us-east-1")
    with pytest.raises(ValueError, match="SHADOWING_REGION_PAIRS: expected primary=shadow, got 'us-east-1'"):
        region_pairs()


def test_blueprints_accept_the_regions_the_settings_accept() -> None:
    """The blueprint model had its own, stricter pattern: a blueprint for us-isob-east-1 was refused."""
    payload = build().payload
    for name in ("us-isob-east-1", "us-gov-east-1", "eu-west-1"):
        assert Blueprint.from_dict({**payload, "shadow_region": name, "replication": []}).shadow_region == name
    with pytest.raises(InputError, match="shadow_region.*not an AWS region name: 'us-east1'"):
        Blueprint.from_dict({**payload, "shadow_region": "us-east1"})
