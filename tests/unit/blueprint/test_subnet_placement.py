"""Which shadow subnets a service is placed in: the same before and after pre-staging (no spurious version).

Pure: the builder and ``resolve_prestaged`` on hand-made inventories (no AWS, no database)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shadowing.aws import tags as T
from shadowing.blueprint.builder import BuildInputs, build_blueprint
from shadowing.blueprint.model import blueprint_hash
from shadowing.blueprint.refresh import resolve_prestaged

PRIMARY = "us-east-1"


def inventory(subnets: list[tuple[str, str, str]], placed: dict[str, list[str]]) -> dict[str, Any]:
    """``subnets``: (id, primary AZ, CIDR); ``placed``: service → subnet ids of its instances."""
    instances = [{"id": f"i-{svc}-{k}", "type": "t3.small", "ami": f"ami-{svc}", "subnet": sid, "az": "",
                  "security_groups": [], "tags": {T.SERVICE: svc}}
                 for svc, sids in placed.items() for k, sid in enumerate(sids)]
    return {"region": PRIMARY, "inventory_hash": "h", "vpcs": [{"id": "vpc-1", "cidr": "10.0.0.0/16", "tags": {}}],
            "subnets": [{"id": i, "az": az, "cidr": cidr, "vpc_id": "vpc-1", "tags": {}} for i, az, cidr in subnets],
            "security_groups": [], "instances": instances, "launch_templates": [], "images": {},
            "load_balancers": [], "target_groups": [], "hosted_zones": [], "db_instances": [], "db_clusters": [],
            "buckets": []}


def prestaged(shadow_azs: list[str], subnets: dict[str, str] | None = None) -> dict[str, Any]:
    """The shadow's state: its AZs and the pre-staged subnets by CIDR (``cidr → az``)."""
    return {"vpc": {"id": "vpc-s", "cidr": "10.0.0.0/16"} if subnets else None, "azs": shadow_azs,
            "subnets": {cidr: {"id": f"subnet-s{n}", "az": az} for n, (cidr, az) in enumerate(sorted(
                (subnets or {}).items()))},
            "security_groups": {}, "launch_templates": {}, "ami_copies": {}, "replicas": {}}


CASES = {
    # a public and a private subnet in each AZ: a private service must stay out of the public subnets
    "public and private subnets of one AZ": (
        [("subnet-pub-a", "us-east-1a", "10.0.0.0/24"), ("subnet-prv-a", "us-east-1a", "10.0.1.0/24"),
         ("subnet-pub-b", "us-east-1b", "10.0.2.0/24"), ("subnet-prv-b", "us-east-1b", "10.0.3.0/24")],
        {"web": ["subnet-pub-a", "subnet-pub-b"], "db-api": ["subnet-prv-a", "subnet-prv-b"]},
        "us-west-2", ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"]),
    # three primary AZs folded onto a shadow of two (us-west-1 has two)
    "fewer AZs in the shadow": (
        [("subnet-a", "us-east-1a", "10.0.0.0/20"), ("subnet-b", "us-east-1b", "10.0.16.0/20"),
         ("subnet-c", "us-east-1c", "10.0.32.0/20")],
        {"web": ["subnet-a", "subnet-b"], "worker": ["subnet-c"]},
        "us-west-1", ["us-west-1a", "us-west-1b"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_service_keeps_exactly_its_subnets_before_and_after_pre_staging(case: str) -> None:
    subnets, placed, shadow, shadow_azs = CASES[case]
    inv = inventory(subnets, placed)
    before = build_blueprint(BuildInputs(PRIMARY, shadow, None, None, inv, prestaged(shadow_azs)))
    # Pre-staging creates one shadow subnet per CIDR, in the AZ the blueprint mapped it to.
    state = prestaged(shadow_azs, {s.cidr: s.az for s in before.blueprint.networking.subnets})
    resolved = resolve_prestaged(before.blueprint, state, before.placement)
    # The next refresh finds the subnets and maps every instance's subnet by its CIDR.
    after = build_blueprint(BuildInputs(PRIMARY, shadow, None, None, copy.deepcopy(inv), state))
    id_of = {cidr: entry["id"] for cidr, entry in state["subnets"].items()}
    cidr_of = {sid: cidr for sid, _, cidr in subnets}
    for service, sids in placed.items():
        expected = sorted({id_of[cidr_of[sid]] for sid in sids})
        assert resolved.services[service].subnets == expected, service
        assert after.blueprint.services[service].subnets == expected, service
    assert blueprint_hash(resolved.to_dict()) == blueprint_hash(after.payload)  # one version, not two


def test_without_a_known_placement_a_zone_still_resolves_to_all_its_subnets() -> None:
    subnets, placed, shadow, shadow_azs = CASES["fewer AZs in the shadow"]
    before = build_blueprint(BuildInputs(PRIMARY, shadow, None, None, inventory(subnets, placed),
                                         prestaged(shadow_azs)))
    state = prestaged(shadow_azs, {s.cidr: s.az for s in before.blueprint.networking.subnets})
    resolved = resolve_prestaged(before.blueprint, state)  # e.g. a plan stored before placements existed
    in_a = sorted(e["id"] for e in state["subnets"].values() if e["az"] == "us-west-1a")
    assert len(in_a) == 2 and set(in_a) <= set(resolved.services["web"].subnets)
