"""Inventory rows: addresses are checked and written as flow logs write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowing.dependencies.inventory import inventory_from_records, load_inventory
from shadowing.errors import InputError


@pytest.mark.parametrize("address", ["10.0.1.300", "10.0.1", "10.0.1.0/24", "web-1", "010.0.1.1", "fe80::zz"])
def test_an_invalid_address_is_refused_naming_file_line_and_field(tmp_path: Path, address: str) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text(f"ip,service\n10.0.1.10,web\n# a comment line keeps numbering\n{address},api\n")
    with pytest.raises(InputError, match=r"inventory\.csv:4 field 'ip': not an IPv4 or IPv6 address"):
        load_inventory(path)


def test_ipv6_is_matched_in_its_canonical_form(tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text("ip,service\n2001:DB8:0:0::1,api\n 10.0.1.10 ,web\n")
    inventory = load_inventory(path)
    assert inventory.lookup_one("2001:db8::1", 100) == "api"
    assert inventory.lookup_one("10.0.1.10", 100) == "web"


def test_records_from_aws_are_checked_too() -> None:
    with pytest.raises(InputError, match="'ip'"):
        inventory_from_records([{"ip": "999.1.1.1", "service": "web"}])
    inventory = inventory_from_records([{"ip": "10.0.0.1", "service": "web"}])
    assert list(inventory.lookup(["10.0.0.1", "10.0.0.2"], np.array([5, 5]))) == [0, -1]
