"""Adversarial checks of the shadow region manager: the versioned blueprint history as the README's audit
commands read it, the shadow_blueprints DAG's Params and task failures, and the readiness of skewed inputs.

Real components only: SQLite and PostgreSQL (`warehouse_url`), the moto server (`aws`), the DAG file itself.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shadowing.blueprint.diff import diff_blueprints
from shadowing.blueprint.refresh import build_plan
from shadowing.cli import main
from shadowing.errors import InputError
from shadowing.warehouse import open_warehouse
from shadowing.warehouse.store import (
    blueprint_as_of,
    blueprint_history,
    save_fingerprint,
    save_graph,
    upsert_blueprint_version,
)
from tests.support.blueprint_world import client_factory

ROOT = Path(__file__).resolve().parents[2]
R, SHADOW = "us-east-1", "us-west-2"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Offsets (seconds) of the writers' clocks: forwards, backwards (skewed workers), equal, sub-second.
SKEWED_CLOCKS = [0, 3600, 1800, 1800, 7200, 7199, 10, 86400, 86400.5, 3, 86400.5]


def _history_with_skewed_clocks(engine: sa.Engine) -> list[Any]:
    for i, offset in enumerate(SKEWED_CLOCKS):
        upsert_blueprint_version(engine, primary_region=R, shadow_region=SHADOW,
                                 payload={"services": {"web": {"count": i}}}, run_id=f"r{i}", diff=diff_blueprints,
                                 now=T0 + timedelta(seconds=offset))
    return blueprint_history(engine, R)


@functools.cache
def _dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "shadow_blueprints.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["shadow_blueprints"]


def _cli_rows(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["blueprint", "query", *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_history_stays_one_chain_under_skewed_clocks_and_the_audit_cli_reads_it_at_every_boundary(
        warehouse_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = open_warehouse(warehouse_url)
    history = _history_with_skewed_clocks(engine)
    assert [v.version for v in history] == list(range(1, len(SKEWED_CLOCKS) + 1))
    assert [v.is_current for v in history] == [False] * (len(history) - 1) + [True]
    for older, newer in zip(history, history[1:], strict=False):
        assert older.valid_from < older.valid_to == newer.valid_from  # no gap, no overlap, never empty

    # The README's command, as documented (`--region`), and the as-of query at each exact boundary.
    rows = _cli_rows(capsys, "--warehouse-url", warehouse_url, "blueprint_history", "--region", R)
    assert [r["version"] for r in rows] == [v.version for v in history]
    for v in history:
        for spelling in (v.valid_from.isoformat(), v.valid_from.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                         v.valid_from.astimezone(
                             __import__("zoneinfo").ZoneInfo("America/New_York")).isoformat()):
            rows = _cli_rows(capsys, "--warehouse-url", warehouse_url, "blueprint_as_of", "--region", R,
                             "--param", f"at={spelling}")
            assert [r["version"] for r in rows] == [v.version], spelling
        just_before = v.valid_from - timedelta(microseconds=1)
        rows = _cli_rows(capsys, "--warehouse-url", warehouse_url, "blueprint_as_of", "--region", R,
                         "--param", f"at={just_before.isoformat()}")
        expected = blueprint_as_of(engine, R, just_before)
        assert [r["version"] for r in rows] == ([] if expected is None else [expected.version])
        assert [r["version"] for r in rows] == ([] if v.version == 1 else [v.version - 1])
    # An instant written without an offset is UTC, like every stored timestamp.
    naive = history[1].valid_from.replace(tzinfo=None).isoformat(sep=" ")
    rows = _cli_rows(capsys, "--warehouse-url", warehouse_url, "blueprint_as_of", "--region", R,
                     "--param", f"at={naive}")
    assert [r["version"] for r in rows] == [2]


@pytest.mark.parametrize("argv, named", [
    (["blueprint_as_of", "--region", R], "at"),
    (["blueprint_diff", "--param", f"region={R}", "--param", "from_version=1"], "to_version"),
    (["blueprint_as_of", "--region", R, "--param", "at=2026-02-30T12:00:00"], "2026-02-30"),
])
def test_a_missing_or_unreadable_query_parameter_is_a_one_line_error(
        sqlite_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], named: str) -> None:
    _history_with_skewed_clocks(open_warehouse(sqlite_url))
    assert main(["blueprint", "query", "--warehouse-url", sqlite_url, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shadowing blueprint: error:") and named in err[0], err


def test_a_validation_failure_fails_the_task_without_a_retry_and_is_recorded_once(
        warehouse_conn_env: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from shadowing.orchestration.blueprints import validate

    engine = open_warehouse(warehouse_conn_env)
    plan = {"primary_region": R, "shadow_region": SHADOW, "payload": None,
            "issues": [{"check": "freshness", "subject": "graph", "passed": False, "detail": "no valid graph"}]}
    # The same plan fails the same way: a retry (the task has one) would record the failure twice in this run.
    with pytest.raises(AirflowFailException, match="failed validation"):
        validate(plan, "run-1")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT check_name, subject, passed FROM readiness_results "
                                    "WHERE run_id = 'run-1' ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("freshness", "graph", False), ("blueprint_valid", "blueprint", False)]


@pytest.mark.parametrize("hours", [1e12, math.inf, math.nan, 0.0, -1.0, 24.0 * 367])
def test_max_age_hours_out_of_range_is_refused_by_the_param_and_named_by_the_task(
        hours: float, warehouse_conn_env: str) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    from shadowing.orchestration.blueprints import build

    if not math.isnan(hours):  # NaN cannot come through a run's JSON conf; the task refuses it anyway
        with pytest.raises(ParamValidationError):
            copy.deepcopy(_dag().params)["max_age_hours"] = hours
    # A run created before the bound existed (or through an API that skips validation) is named, not a traceback.
    with pytest.raises(InputError, match="max_age_hours"):
        build({"primary_region": R, "shadow_region": SHADOW}, "run-1", hours)


def test_the_param_bounds_accept_the_documented_range() -> None:
    from shadowing.orchestration.blueprints import max_age

    for hours in (0.1, 24, 24.0 * 366):
        copy.deepcopy(_dag().params)["max_age_hours"] = hours  # accepted by the Param
        assert max_age(hours) == timedelta(hours=hours)


def test_inputs_dated_in_the_future_are_not_fresh(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    now = datetime.now(UTC)
    # A producer with a skewed clock (or a wrong window) dates its fingerprint a month ahead: it used to pass the
    # freshness check ("age -2592000 s") and would have kept passing for a month after its data went stale.
    save_fingerprint(engine, region=R, fingerprint={"region": R, "services": {}}, valid=True,
                     window_start=now, window_end=now + timedelta(days=30))
    save_graph(engine, region=R, graph={"nodes": [], "edges": [], "graph": {}}, valid=True,
               window_end=now + timedelta(minutes=2))  # seconds to minutes of drift are tolerated
    plan = build_plan(engine, client_factory(aws), R, SHADOW, run_id="r1", now=now)
    fresh = {i["subject"]: i for i in plan["issues"] if i["check"] == "freshness"}
    assert not fresh["fingerprint"]["passed"] and "clock" in fresh["fingerprint"]["detail"]
    assert fresh["graph"]["passed"], fresh["graph"]


@pytest.mark.parametrize("shadow", ["us-west-1", "ap-northeast-1"])  # 2 AZs; a, c, d (no b) for us-east-1's a–f
def test_a_shadow_with_other_zones_than_the_primary_reaches_one_steady_version(
        aws: str, sqlite_url: str, shadow: str) -> None:
    from shadowing.aws import tags as T
    from shadowing.blueprint.refresh import refresh_region
    from shadowing.warehouse.store import current_blueprint
    from tests.integration.test_blueprint_refresh import fingerprint_of, graph_of
    from tests.support.blueprint_world import seeded_world

    world = seeded_world(aws)
    engine = open_warehouse(sqlite_url)
    save_fingerprint(engine, region=R, fingerprint=fingerprint_of(world), valid=True)
    save_graph(engine, region=R, graph=graph_of(world), valid=True)
    clients = client_factory(aws)
    first = refresh_region(engine, clients, R, shadow, run_id="r1")
    assert first["created"] and first["ready"], first["failed"]
    # Nothing changed in the primary: the refresh that finds the pre-staged subnets stores no second version
    # (it used to, moving services into every subnet of a zone that two primary zones fold onto).
    again = refresh_region(engine, clients, R, shadow, run_id="r2")
    assert not again["created"], again.get("diff")
    assert [v.version for v in blueprint_history(engine, R)] == [1]

    # Each service sits in exactly the shadow subnets with the CIDRs its primary instances use.
    primary_ec2, shadow_ec2 = clients("ec2", R), clients("ec2", shadow)
    cidr_of = {s["SubnetId"]: s["CidrBlock"] for s in primary_ec2.describe_subnets()["Subnets"]}
    shadow_id = {s["CidrBlock"]: s["SubnetId"] for s in shadow_ec2.describe_subnets()["Subnets"]
                 if T.from_aws(s.get("Tags")).get(T.PRESTAGED_FOR) == R}
    used: dict[str, set[str]] = {}
    for reservation in primary_ec2.describe_instances()["Reservations"]:
        for inst in reservation["Instances"]:
            service = T.from_aws(inst.get("Tags")).get(T.SERVICE)
            if service and inst["State"]["Name"] == "running":
                used.setdefault(service.strip(), set()).add(shadow_id[cidr_of[inst["SubnetId"]]])
    payload = current_blueprint(engine, R).payload  # type: ignore[union-attr]
    compute = {n: s for n, s in payload["services"].items() if s.get("kind", "compute") == "compute"}
    assert compute and {n: set(s["subnets"]) for n, s in compute.items()} == {n: used[n] for n in compute}


def test_two_refreshes_of_one_region_at_once_pre_stage_it_once(aws: str, warehouse_url: str) -> None:
    import threading

    from shadowing.aws import tags as T
    from shadowing.blueprint.prestage import SOURCE_AMI
    from shadowing.blueprint.refresh import refresh_region
    from tests.integration.test_blueprint_refresh import fingerprint_of, graph_of
    from tests.support.blueprint_world import seeded_world

    world = seeded_world(aws)
    engine = open_warehouse(warehouse_url)
    save_fingerprint(engine, region=R, fingerprint=fingerprint_of(world), valid=True)
    save_graph(engine, region=R, graph=graph_of(world), valid=True)
    barrier = threading.Barrier(2)
    outcomes: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def refresh(run_id: str) -> None:  # e.g. an operator's CLI refresh beside the DAG's
        try:
            barrier.wait()
            outcomes.append(refresh_region(engine, client_factory(aws), R, SHADOW, run_id=run_id))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(f"run-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Both found nothing pre-staged and both created: two VPCs, twice the subnets, security groups and AMI
    # copies, and both refreshes failed on the launch templates' names.
    assert not errors, errors
    assert sorted(o["created"] for o in outcomes) == [False, True] and all(o["ready"] for o in outcomes)
    assert [(v.version, v.is_current) for v in blueprint_history(engine, R)] == [(1, True)]
    ec2 = client_factory(aws)("ec2", SHADOW)
    ours = [{"Name": f"tag:{T.PRESTAGED_FOR}", "Values": [R]}]
    primary = client_factory(aws)("ec2", R)
    primary_vpc = {i["VpcId"] for r in primary.describe_instances()["Reservations"] for i in r["Instances"]}
    assert len(ec2.describe_vpcs(Filters=ours)["Vpcs"]) == 1
    assert len(ec2.describe_subnets(Filters=ours)["Subnets"]) == len(primary.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": sorted(primary_vpc)}])["Subnets"])
    groups = [T.from_aws(g.get("Tags")).get(T.SERVICE) for g in ec2.describe_security_groups(Filters=ours)[
        "SecurityGroups"]]
    assert len(groups) == len(set(groups))
    sources = [T.from_aws(i.get("Tags")).get(SOURCE_AMI) or i.get("Description")
               for i in ec2.describe_images(Owners=["self"])["Images"]]
    assert len(sources) == len(set(sources))


def test_the_pre_staging_lock_is_exclusive_and_names_the_region_when_it_times_out(warehouse_url: str) -> None:
    from shadowing.errors import ShadowingError
    from shadowing.warehouse.blueprints import prestage_lock

    engine, other = open_warehouse(warehouse_url), open_warehouse(warehouse_url)
    with prestage_lock(engine, R):
        with pytest.raises(ShadowingError, match=R), prestage_lock(other, R, timeout=0.3, poll=0.05):
            pass
        with prestage_lock(other, "eu-west-1", timeout=0.3):  # another region is not blocked
            pass
    with prestage_lock(other, R, timeout=0.3):  # released
        pass
    # the region names a lock file beside the database: a name that is no region is refused, never a path
    with pytest.raises(ShadowingError, match="not an AWS region name"), prestage_lock(engine, "../../etc/x"):
        pass


def test_a_newer_fingerprint_or_graph_that_failed_validation_is_never_built_from(aws: str, sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    now = datetime.now(UTC)
    good_fp = save_fingerprint(engine, region=R, fingerprint={"region": R, "services": {}}, valid=True,
                               window_end=now - timedelta(hours=1))
    good_graph = save_graph(engine, region=R, graph={"nodes": [], "edges": [], "graph": {}}, valid=True,
                            window_end=now - timedelta(hours=1))
    save_fingerprint(engine, region=R, fingerprint={"region": R, "services": {"ghost": {"sizing": 9}}}, valid=False,
                     errors=["p99 above max"], window_end=now)
    save_graph(engine, region=R, graph={"nodes": [{"id": "ghost"}], "edges": [], "graph": {}}, valid=False,
               errors=["cycle split"], window_end=now)
    plan = build_plan(engine, client_factory(aws), R, SHADOW, run_id="r1", now=now)
    assert plan["payload"]["provenance"]["fingerprint_id"] == good_fp
    assert plan["payload"]["provenance"]["graph_id"] == good_graph
    assert "ghost" not in json.dumps(plan["payload"]) and not any(i["subject"] == "ghost" for i in plan["issues"])


def test_an_ami_copy_still_pending_is_waited_for_not_copied_again(aws: str, sqlite_url: str) -> None:
    from shadowing.aws import tags as T
    from shadowing.blueprint.prestage import SOURCE_AMI
    from shadowing.blueprint.refresh import refresh_region
    from tests.integration.test_blueprint_refresh import fingerprint_of, graph_of
    from tests.support.blueprint_world import seeded_world

    world = seeded_world(aws)
    engine = open_warehouse(sqlite_url)
    save_fingerprint(engine, region=R, fingerprint=fingerprint_of(world), valid=True)
    save_graph(engine, region=R, graph=graph_of(world), valid=True)
    clients = client_factory(aws)
    shadow_ec2 = clients("ec2", SHADOW)

    def as_aws_reports_a_copy_in_progress(parsed: dict[str, Any], **_: Any) -> None:
        for image in parsed.get("Images", []):  # moto's copies are available at once; AWS's take minutes
            if T.from_aws(image.get("Tags")).get(SOURCE_AMI):
                image["State"] = "pending"

    shadow_ec2.meta.events.register("after-call.ec2.DescribeImages", as_aws_reports_a_copy_in_progress)
    first = refresh_region(engine, clients, R, SHADOW, run_id="r1")
    copies = len(shadow_ec2.describe_images(Owners=["self"])["Images"])
    assert copies and not first["ready"]
    again = refresh_region(engine, clients, R, SHADOW, run_id="r2")  # the copies are still pending
    assert not [line for line in again["prestage"]["created"] if line.startswith("ami")]
    assert len([line for line in again["prestage"]["skipped"] if "still pending" in line]) == copies
    assert len(shadow_ec2.describe_images(Owners=["self"])["Images"]) == copies  # each image copied once

    shadow_ec2.meta.events.unregister("after-call.ec2.DescribeImages", as_aws_reports_a_copy_in_progress)
    done = refresh_region(engine, clients, R, SHADOW, run_id="r3")  # the copies completed
    assert done["ready"], done["failed"]
    assert len(shadow_ec2.describe_images(Owners=["self"])["Images"]) == copies
