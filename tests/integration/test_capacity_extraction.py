"""CloudWatch extraction (metrics/cloudwatch.py) against the seeded world on the real moto server.

The world publishes with the shared metric table (names.py); extraction must read back exactly what was
published, for the interval asked, from every tagged instance, in calls of at most 500 queries.
"""

from __future__ import annotations

import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from shadowing.aws import tags as T
from shadowing.metrics.cloudwatch import DEFAULT_WINDOW_PERIODS, MAX_QUERIES, discover_instances, extract
from shadowing.metrics.names import CANONICAL_METRICS, METRICS
from shadowing.world.app import build_app
from shadowing.world.seeding import inventory_from_aws, metric_datums, put_metric_datums, seed_world
from shadowing.world.state import WorldClients, load_state

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # fixed: the world's shapes are deterministic by time
SEED = dict(seed=1, history_days=0.05, secondary_history_days=0.05, flow_minutes=6, now=NOW)
REGION = "us-east-1"


@pytest.fixture(scope="module")
def world(moto_endpoint: str) -> WorldClients:
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"),
                           timeout=30).close()
    clients = WorldClients.connect(moto_endpoint)
    seed_world(clients, **SEED)
    return clients


def _published(c: WorldClients, start: datetime, end: datetime) -> dict[tuple[str, str, float], float]:
    """(instance, canonical metric, epoch s) → value, as the world published them (its own generator)."""
    state = load_state(c.ssm)
    assert state is not None
    app = build_app(state.services, state.seed, state.instances_per_service)
    inventory = inventory_from_aws(c, state, app)
    by_cw = {(s.namespace, s.cloudwatch_name): s.name for s in METRICS.values()}
    out = {}
    for ns, datums in metric_datums(app, inventory, start, end, state.history_step, state.seed).items():
        for d in datums:
            out[(d["Dimensions"][0]["Value"], by_cw[(ns, d["MetricName"])], d["Timestamp"].timestamp())] = d["Value"]
    return out


def _recorded_calls(client: Any) -> list[dict[str, Any]]:
    """Parameters of every GetMetricData call the (real) client makes, via botocore's event hooks."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.cloudwatch.GetMetricData",
                                lambda params, **_: calls.append(dict(params)))
    return calls


def _rows(cols) -> dict[tuple[str, str, float], float]:  # type: ignore[no-untyped-def]
    return {(cols.instances[i], cols.metrics[m], t): v for i, m, t, v in
            zip(cols.instance.tolist(), cols.metric.tolist(), cols.ts.tolist(), cols.values.tolist(), strict=True)}


def test_discovers_every_tagged_instance_including_terminated(world: WorldClients) -> None:
    found = discover_instances(world.ec2)
    tagged = []
    for page in world.ec2.get_paginator("describe_instances").paginate():
        for r in page["Reservations"]:
            tagged += [(i["InstanceId"], i["State"]["Name"], T.from_aws(i.get("Tags"))) for i in r["Instances"]]
    expected = {iid: t[T.SERVICE] for iid, _, t in tagged if T.SERVICE in t}
    assert found == expected
    # the world replaced one instance during the last hour: its metrics until then are still demand
    assert any(state == "terminated" and iid in found for iid, state, _ in tagged)
    app = build_app(None, 1)
    assert set(found.values()) == {s.name for s in app.compute_services()}


def test_values_equal_what_was_published_for_the_interval_only(world: WorldClients) -> None:
    start, end = NOW - timedelta(minutes=40), NOW - timedelta(minutes=10)
    calls = _recorded_calls(world.cloudwatch)
    cols = extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end)
    published = _published(world, start, end)
    got = _rows(cols)
    assert got.keys() == published.keys()  # every instance × metric × sample of the interval, nothing else
    assert max(abs(got[k] - v) for k, v in published.items()) < 1e-9
    assert all(start.timestamp() <= t < end.timestamp() for _, _, t in got)
    assert set(cols.metrics) == set(CANONICAL_METRICS)
    assert cols.region == REGION
    # the terminated instance's samples before its end are in; each instance is filed under its service
    services = dict(zip(cols.instances, (cols.services[s] for s in
                                         np.bincount(cols.instance, weights=cols.service).astype(int)
                                         // np.bincount(cols.instance)), strict=True))
    assert services == {iid: svc for iid, svc in discover_instances(world.ec2).items() if iid in services}
    # consecutive windows of at most DEFAULT_WINDOW_PERIODS periods tile exactly [start, end)
    bounds = sorted({(c["StartTime"], c["EndTime"]) for c in calls})
    assert bounds[0][0] == start and bounds[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(e - s <= timedelta(minutes=DEFAULT_WINDOW_PERIODS) for s, e in bounds)
    assert len(bounds) == -(-30 // DEFAULT_WINDOW_PERIODS)
    assert all(len(c["MetricDataQueries"]) <= MAX_QUERIES for c in calls)


def test_end_is_exclusive(world: WorldClients) -> None:
    step = load_state(world.ssm).history_step  # type: ignore[union-attr]
    sample = NOW - timedelta(seconds=step * 3)  # a sample time of the world
    before = extract(world.cloudwatch, world.ec2, region=REGION, start=sample - timedelta(seconds=step),
                     end=sample)
    assert len(before) and before.ts.max() < sample.timestamp()
    at = extract(world.cloudwatch, world.ec2, region=REGION, start=sample, end=sample + timedelta(seconds=1))
    assert len(at) and set(at.ts.tolist()) == {sample.timestamp()}


def test_queries_are_chunked_and_chunks_agree(world: WorldClients) -> None:
    start, end = NOW - timedelta(minutes=20), NOW
    instances = discover_instances(world.ec2)
    calls = _recorded_calls(world.cloudwatch)
    whole = extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end, window_periods=None)
    n_whole = len(calls)
    chunked = extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end, max_queries=50,
                      window_periods=None)
    queries = len(instances) * len(METRICS)
    assert n_whole == 1 and len(calls[0]["MetricDataQueries"]) == queries <= MAX_QUERIES
    assert len(calls) - n_whole == -(-queries // 50)
    assert all(len(c["MetricDataQueries"]) <= 50 for c in calls[n_whole:])
    assert _rows(chunked) == _rows(whole)
    with pytest.raises(ValueError):
        extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end, max_queries=MAX_QUERIES + 1)


def test_windows_times_chunks_read_the_same_rows(world: WorldClients) -> None:
    """Short time windows × query chunks: every window asks every chunk, and nothing is lost or repeated."""
    start, end = NOW - timedelta(minutes=23), NOW  # 23 periods: 4 windows of 6, the last one shorter
    instances = discover_instances(world.ec2)
    whole = extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end, window_periods=None)
    calls = _recorded_calls(world.cloudwatch)
    windowed = extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end, max_queries=100,
                       window_periods=6)
    chunks = -(-len(instances) * len(METRICS) // 100)
    assert len(calls) == 4 * chunks
    assert sorted({(c["StartTime"] - start, c["EndTime"] - start) for c in calls}) == [
        (timedelta(minutes=a), timedelta(minutes=b)) for a, b in ((0, 6), (6, 12), (12, 18), (18, 23))]
    assert _rows(windowed) == _rows(whole) and len(windowed) == len(whole)
    # one run per series in time order (the fingerprint's fast path), whatever the window order
    key = windowed.instance.astype(np.int64) * len(windowed.metrics) + windowed.metric
    change = np.flatnonzero(np.diff(key)) + 1
    assert len(np.unique(key)) == change.size + 1
    assert all(np.all(np.diff(windowed.ts[a:b]) > 0) for a, b in zip([0, *change], [*change, len(key)],
                                                                      strict=True))
    with pytest.raises(ValueError):
        extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end, window_periods=0)


def test_republished_minutes_do_not_duplicate_rows(world: WorldClients) -> None:
    """A publisher that retries (same datums twice) or sends a correction inside the period: one row each."""
    start, end = NOW - timedelta(minutes=60), NOW - timedelta(minutes=45)
    before = _rows(extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end))
    state = load_state(world.ssm)
    app = build_app(state.services, state.seed, state.instances_per_service)  # type: ignore[union-attr]
    again = metric_datums(app, inventory_from_aws(world, state, app), start, end,  # type: ignore[arg-type]
                          state.history_step, state.seed)  # type: ignore[union-attr]
    put_metric_datums(world.cloudwatch, again)
    after = _rows(extract(world.cloudwatch, world.ec2, region=REGION, start=start, end=end))
    assert after.keys() == before.keys()
    assert max(abs(after[k] - v) for k, v in before.items()) < 1e-9
    per_series = Counter((i, m) for i, m, _ in after)
    assert len(set(per_series.values())) <= 2  # instances alive all along have the same number of samples


def test_empty_or_naive_interval_is_refused(world: WorldClients) -> None:
    from shadowing.errors import InputError

    with pytest.raises(InputError, match="empty data interval"):
        extract(world.cloudwatch, world.ec2, region=REGION, start=NOW, end=NOW)
    with pytest.raises(InputError, match="timezone-aware"):
        extract(world.cloudwatch, world.ec2, region=REGION, start=NOW.replace(tzinfo=None) - timedelta(hours=1),
                end=NOW.replace(tzinfo=None))
