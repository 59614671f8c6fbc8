"""CloudWatch extraction (metrics/cloudwatch.py) under adversarial but realistic conditions, on the real moto server.

Every test publishes its own datapoints (values unique per instance × metric × minute, so a point filed under
the wrong instance, metric or time shows) and compares the extracted frame with them exactly. What moto cannot
produce — paginated GetMetricData answers and throttling — is injected through botocore's event hooks on the
real client: the pages are cut from moto's real answer the way CloudWatch cuts them (one result Id spread over
several pages, ``PartialData`` until its last part), the throttle is a real ``Throttling`` error response that
botocore's own retry handler sees.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from shadowing.aws import tags as T
from shadowing.aws.clients import RETRY_CONFIG, client
from shadowing.metrics.cloudwatch import MAX_QUERIES, discover_instances, extract
from shadowing.metrics.names import INSTANCE_DIMENSION, METRICS
from shadowing.world.seeding import put_metric_datums

REGION = "us-east-1"
OTHER_REGION = "us-west-2"
START = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # a whole hour

Key = tuple[str, str, float]  # (instance id, canonical metric, epoch seconds)


# ── helpers ───────────────────────────────────────────────────────────────────────────────────────────────

def _clients(endpoint: str, region: str = REGION, config: Config | None = None) -> tuple[Any, Any]:
    return client("ec2", region, endpoint), client("cloudwatch", region, endpoint, config)


def _image(ec2: Any) -> str:
    """An Amazon Linux 2 image of the emulator (filtered: listing all of moto's ~1300 images takes seconds)."""
    found = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-2.0.*"]}])
    return str(found["Images"][0]["ImageId"])


def _launch(ec2: Any, count: int, service: str | None, **extra_tags: str) -> list[str]:
    image = _image(ec2)
    tag_map = ({T.SERVICE: service} if service is not None else {}) | extra_tags
    spec = [{"ResourceType": "instance", "Tags": T.to_aws(tag_map)}] if tag_map else []
    out = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=count, MaxCount=count,
                            TagSpecifications=spec)
    return sorted(i["InstanceId"] for i in out["Instances"])


def _value(instance: int, metric: int, minute: int) -> float:
    """Unique per (instance, metric, minute), and a valid value for every metric (percentages stay < 100)."""
    return round(instance * 0.37 + metric * 0.011 + minute * 0.0001, 6) % 97 + 1


def _publish(cloudwatch: Any, instance_ids: Iterable[str], minutes: Iterable[int], *, start: datetime = START,
             value: Callable[[int, int, int], float] = _value, offset: int = 0) -> dict[Key, float]:
    """One datapoint per instance × canonical metric × minute (at ``start`` + minute); returns what was put."""
    by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    published: dict[Key, float] = {}
    for n, iid in enumerate(instance_ids, start=offset):
        for m, spec in enumerate(METRICS.values()):
            for minute in minutes:
                at = start + timedelta(minutes=minute)
                v = value(n, m, minute)
                by_namespace[spec.namespace].append({
                    "MetricName": spec.cloudwatch_name, "Dimensions": [{"Name": INSTANCE_DIMENSION, "Value": iid}],
                    "Timestamp": at, "Value": v, "Unit": spec.unit})
                published[(iid, spec.name, at.timestamp())] = v
    put_metric_datums(cloudwatch, by_namespace)
    return published


def _rows(cols: Any) -> dict[Key, float]:
    """The frame as {(instance, metric, epoch s): value}, after checking no key occurs twice."""
    keys = list(zip((cols.instances[i] for i in cols.instance.tolist()),
                    (cols.metrics[m] for m in cols.metric.tolist()), cols.ts.tolist(), strict=True))
    repeated = [k for k, n in Counter(keys).items() if n > 1]
    assert not repeated, f"{len(repeated)} duplicated rows, e.g. {repeated[:3]}"
    return dict(zip(keys, cols.values.tolist(), strict=True))


def _service_of(cols: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for i, s in zip(cols.instance.tolist(), cols.service.tolist(), strict=True):
        out[cols.instances[i]].add(cols.services[s])
    return dict(out)


def _recorded_calls(cloudwatch: Any) -> list[dict[str, Any]]:
    """Parameters of every GetMetricData call (one per API call, retries of it not counted)."""
    calls: list[dict[str, Any]] = []
    cloudwatch.meta.events.register("provide-client-params.cloudwatch.GetMetricData",
                                    lambda params, **_: calls.append(dict(params)))
    return calls


class _Pager:
    """Makes moto's one-page GetMetricData answers paginate like CloudWatch: at most ``page_points`` datapoints
    per page, a result continued on the next page under the same Id with ``PartialData``, a NextToken that is
    only good once and only for the request that earned it (same queries and times, as CloudWatch requires)."""

    def __init__(self, cloudwatch: Any, page_points: int) -> None:
        self.page_points = page_points
        self.pending: dict[str, tuple[Any, list[list[dict[str, Any]]]]] = {}
        self.token: str | None = None
        self.request: Any = None
        self.tokens_sent: list[str | None] = []
        self.pages_served = 0
        cloudwatch.meta.events.register("provide-client-params.cloudwatch.GetMetricData", self._params)
        cloudwatch.meta.events.register("after-call.cloudwatch.GetMetricData", self._after)

    def _params(self, params: dict[str, Any], **_: Any) -> None:
        self.token = params.get("NextToken")
        self.tokens_sent.append(self.token)
        self.request = (params["StartTime"], params["EndTime"], [q["Id"] for q in params["MetricDataQueries"]])

    def _split(self, results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        pages: list[dict[str, dict[str, Any]]] = [{}]
        filled = 0
        for res in results:
            points = list(zip(res["Timestamps"], res["Values"], strict=True))
            if not points:
                pages[-1][res["Id"]] = {**res, "StatusCode": "Complete"}
            for stamp, val in points:
                if filled == self.page_points:
                    pages.append({})
                    filled = 0
                part = pages[-1].setdefault(res["Id"], {"Id": res["Id"], "Label": res.get("Label", ""),
                                                        "Timestamps": [], "Values": []})
                part["Timestamps"].append(stamp)
                part["Values"].append(val)
                filled += 1
        last_page = {rid: n for n, page in enumerate(pages) for rid in page}
        return [[{**part, "StatusCode": "Complete" if last_page[rid] == n else "PartialData"}
                 for rid, part in page.items()] for n, page in enumerate(pages)]

    def _after(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        if self.token is None:
            pages = self._split(parsed.get("MetricDataResults", []))
        else:
            assert self.token in self.pending, f"NextToken {self.token!r} re-sent or never issued"
            request, pages = self.pending.pop(self.token)
            assert request == self.request, "NextToken sent with other queries or times than its first page"
        parsed["MetricDataResults"] = pages[0]
        parsed.pop("NextToken", None)
        if len(pages) > 1:
            token = uuid.uuid4().hex
            self.pending[token] = (self.request, pages[1:])
            parsed["NextToken"] = token
        self.pages_served += 1


class _Throttle:
    """Answers the next ``times`` GetMetricData HTTP attempts matching ``when`` with a real Throttling error
    (400, the JSON protocol botocore resolved for CloudWatch); counts every HTTP attempt."""

    def __init__(self, cloudwatch: Any, times: int,
                 when: Callable[[dict[str, Any]], bool] = lambda _params: True) -> None:
        protocol = getattr(cloudwatch.meta.service_model, "resolved_protocol", cloudwatch.meta.service_model.protocol)
        assert protocol == "json", f"throttle injection speaks the JSON protocol, the client uses {protocol}"
        self.left = times
        self.when = when
        self.attempts = 0
        self.throttled = 0
        self.params: dict[str, Any] = {}
        cloudwatch.meta.events.register("provide-client-params.cloudwatch.GetMetricData", self._params)
        cloudwatch.meta.events.register("before-send.cloudwatch.GetMetricData", self._send)

    def _params(self, params: dict[str, Any], **_: Any) -> None:
        self.params = dict(params)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        self.attempts += 1
        if self.left <= 0 or not self.when(self.params):
            return None
        self.left -= 1
        self.throttled += 1
        body = json.dumps({"__type": "Throttling", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Body(body))


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self.data

    def read(self, *_: Any) -> bytes:
        return self.data


# ── tests ─────────────────────────────────────────────────────────────────────────────────────────────────

def test_800_queries_split_into_calls_of_at_most_500_and_read_back_exactly(aws: str) -> None:
    """100 instances × 8 metrics: two chunks per window; the instance whose queries straddle the 500th keeps all
    its metrics; every query is asked exactly once per window; odd chunk sizes × one-period windows agree."""
    ec2, cw = _clients(aws)
    ids = _launch(ec2, 60, "api") + _launch(ec2, 40, "worker")
    published = _publish(cw, sorted(ids), range(3))
    end = START + timedelta(minutes=3)
    calls = _recorded_calls(cw)
    cols = extract(cw, ec2, region=REGION, start=START, end=end)
    assert _rows(cols) == published  # exact values, timestamps, instance × metric
    sizes = [len(c["MetricDataQueries"]) for c in calls]
    assert sizes == [MAX_QUERIES, 100 * len(METRICS) - MAX_QUERIES]
    asked = Counter(q["Id"] for c in calls for q in c["MetricDataQueries"])
    assert len(asked) == 100 * len(METRICS) and set(asked.values()) == {1}
    straddling = sorted(ids)[MAX_QUERIES // len(METRICS)]  # its 8 queries are split over both calls
    assert {m for i, m, _ in _rows(cols) if i == straddling} == set(METRICS)
    launched = {iid: "api" for iid in ids[:60]} | {iid: "worker" for iid in ids[60:]}
    assert _service_of(cols) == {iid: {svc} for iid, svc in launched.items()}
    assert cols.region == REGION

    calls.clear()
    odd = extract(cw, ec2, region=REGION, start=START, end=end, max_queries=137, window_periods=1)
    assert len(calls) == 3 * -(-800 // 137)
    assert _rows(odd) == published


def test_paginated_answers_are_joined_without_loss_or_repeat(aws: str) -> None:
    """Pages of 37 datapoints cut results mid-series (same Id on several pages), across chunks and windows; a
    throttled page request is retried with its token. Same rows as the unpaginated read, none twice."""
    ec2, cw = _clients(aws)
    ids = _launch(ec2, 12, "cart")
    published = _publish(cw, ids, range(5))
    end = START + timedelta(minutes=5)
    plain = _rows(extract(cw, ec2, region=REGION, start=START, end=end, window_periods=None))
    assert plain == published

    pager = _Pager(cw, page_points=37)
    throttle = _Throttle(cw, times=1, when=lambda params: "NextToken" in params)
    paged = extract(cw, ec2, region=REGION, start=START, end=end, max_queries=50, window_periods=2)
    assert _rows(paged) == published
    # 96 queries → chunks of 50 and 46; windows of 2, 2 and 1 minutes; each call's points cut into pages of 37
    expected_pages = sum(-(-(chunk * minutes) // 37) for chunk in (50, 46) for minutes in (2, 2, 1))
    assert pager.pages_served == expected_pages
    assert sum(t is not None for t in pager.tokens_sent) == expected_pages - 6
    assert not pager.pending  # every page issued was read
    assert throttle.throttled == 1 and throttle.attempts == expected_pages + 1


def test_throttling_is_retried_by_the_configured_client_and_never_yields_a_partial_frame(aws_conn_env: str) -> None:
    """The client the DAG builds (Airflow connection → provider hook) carries the adaptive retry config; with
    it, throttled calls are retried and the frame is whole; past the retry budget the error surfaces."""
    from shadowing.orchestration.clients import aws_client

    aws = aws_conn_env
    assert RETRY_CONFIG.retries is not None and RETRY_CONFIG.retries["mode"] == "adaptive"
    ec2, cw = aws_client("ec2", REGION), aws_client("cloudwatch", REGION)
    assert cw.meta.config.retries["mode"] == "adaptive" and cw.meta.config.retries["total_max_attempts"] >= 3
    ids = _launch(ec2, 70, "search")  # 560 queries: two chunks
    published = _publish(cw, ids, range(2))
    end = START + timedelta(minutes=2)
    calls = _recorded_calls(cw)
    # the second chunk's call is throttled once, after the first chunk's rows were read
    throttle = _Throttle(cw, times=1, when=lambda params: len(params["MetricDataQueries"]) == 60)
    cols = extract(cw, ec2, region=REGION, start=START, end=end)
    assert _rows(cols) == published
    assert len(calls) == 2 and throttle.throttled == 1 and throttle.attempts == 3

    # throttled beyond the retry budget: the error surfaces (the task retries), no half-read frame comes back
    _, impatient = _clients(aws, config=Config(retries={"max_attempts": 2, "mode": "standard"}))
    _Throttle(impatient, times=99, when=lambda params: len(params["MetricDataQueries"]) == 60)
    with pytest.raises(ClientError, match="Throttling"):
        extract(impatient, ec2, region=REGION, start=START, end=end)


def test_instance_states_roles_regions_and_silent_instances(aws: str) -> None:
    """Running, stopped and terminated instances report their points; a tagged but silent instance adds no row;
    pre-staged standbys, untagged instances and other regions' instances are not this region's demand."""
    ec2, cw = _clients(aws)
    running = _launch(ec2, 2, "api")
    stopped = _launch(ec2, 1, "api")
    terminated = _launch(ec2, 1, "db")
    silent = _launch(ec2, 2, "api")
    prestaged = _launch(ec2, 1, "api", **{T.ROLE: "prestaged"})
    untagged = _launch(ec2, 1, None, Name="bastion")
    west_ec2, west_cw = _clients(aws, OTHER_REGION)
    west = _launch(west_ec2, 1, "api")
    published = _publish(cw, running + stopped + terminated, range(4))
    _publish(cw, prestaged + untagged, range(4), offset=50)
    _publish(west_cw, west, range(4), offset=60)
    ec2.stop_instances(InstanceIds=stopped)
    ec2.terminate_instances(InstanceIds=terminated)

    found = discover_instances(ec2)
    assert found == {iid: "api" for iid in running + stopped + silent} | {terminated[0]: "db"}
    cols = extract(cw, ec2, region=REGION, start=START, end=START + timedelta(minutes=4))
    assert _rows(cols) == published
    assert _service_of(cols) == {iid: {"api"} for iid in running + stopped} | {terminated[0]: {"db"}}
    assert not set(cols.instances) & set(silent + prestaged + untagged + west)


def test_asg_members_and_bare_instances_of_one_service_count_once(aws: str) -> None:
    """An ASG's members (service tag propagated at launch) next to bare instances of the same service: each
    instance once, under that service; the ASG-level series (AutoScalingGroupName dimension) and an agent's
    series with an extra dimension are other series, never mixed into an instance's."""
    ec2, cw = _clients(aws)
    asg = client("autoscaling", REGION, aws)
    image = _image(ec2)
    ec2.create_launch_template(LaunchTemplateName="web-lt",
                               LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
    asg.create_auto_scaling_group(
        AutoScalingGroupName="web-asg", LaunchTemplate={"LaunchTemplateName": "web-lt"}, MinSize=3, MaxSize=3,
        DesiredCapacity=3, AvailabilityZones=[f"{REGION}a"],
        Tags=[{"Key": T.SERVICE, "Value": "web", "PropagateAtLaunch": True, "ResourceId": "web-asg",
               "ResourceType": "auto-scaling-group"}])
    members = sorted(i["InstanceId"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
                     for i in g["Instances"])
    bare = _launch(ec2, 2, "web")
    assert len(members) == 3
    published = _publish(cw, members + bare, range(3))
    cpu, mem = METRICS["cpu_utilization"], METRICS["memory_utilization"]
    minutes = [START + timedelta(minutes=k) for k in range(3)]
    cw.put_metric_data(Namespace=cpu.namespace, MetricData=[
        {"MetricName": cpu.cloudwatch_name, "Dimensions": [{"Name": "AutoScalingGroupName", "Value": "web-asg"}],
         "Timestamp": at, "Value": 99.5, "Unit": "Percent"} for at in minutes])
    cw.put_metric_data(Namespace=mem.namespace, MetricData=[
        {"MetricName": mem.cloudwatch_name, "Timestamp": at, "Value": 99.5, "Unit": "Percent",
         "Dimensions": [{"Name": INSTANCE_DIMENSION, "Value": iid}, {"Name": "ImageId", "Value": image}]}
        for iid in members + bare for at in minutes])

    cols = extract(cw, ec2, region=REGION, start=START, end=START + timedelta(minutes=3))
    assert _rows(cols) == published
    assert _service_of(cols) == {iid: {"web"} for iid in members + bare}
    assert np.bincount(cols.instance).tolist() == [3 * len(METRICS)] * 5


def test_a_service_tag_changed_mid_window_files_the_instance_once_under_its_current_service(aws: str) -> None:
    """Extraction knows only the tags of now (no tag history): a retagged instance's whole window goes to its
    current service — once, never split or doubled across the old and the new service."""
    ec2, cw = _clients(aws)
    moved = _launch(ec2, 1, "cart")
    stays = _launch(ec2, 1, "cart")
    published = _publish(cw, moved + stays, range(3))
    ec2.create_tags(Resources=moved, Tags=T.to_aws({T.SERVICE: "checkout"}))
    published |= _publish(cw, moved + stays, range(3, 6))
    cols = extract(cw, ec2, region=REGION, start=START, end=START + timedelta(minutes=6))
    assert _rows(cols) == published
    assert _service_of(cols) == {moved[0]: {"checkout"}, stays[0]: {"cart"}}


@pytest.mark.parametrize("period", [60, 300, 3600])
def test_each_period_averages_exactly_the_published_minutes_of_its_bucket(aws: str, period: int) -> None:
    """Two hours of minute points read at 60, 300 and 3600 s: one row per series and period, at the period's
    start, holding the mean of that period's minutes (nothing from a neighbouring period or window)."""
    ec2, cw = _clients(aws)
    ids = _launch(ec2, 2, "api")
    published = _publish(cw, ids, range(120))
    cols = extract(cw, ec2, region=REGION, start=START, end=START + timedelta(hours=2), period=period)
    buckets: dict[Key, list[float]] = defaultdict(list)
    for (iid, metric, ts), v in published.items():
        buckets[(iid, metric, ts - (ts - START.timestamp()) % period)].append(v)
    expected = {k: float(np.mean(vs)) for k, vs in buckets.items()}
    got = _rows(cols)
    assert got.keys() == expected.keys()
    assert len(got) == 2 * len(METRICS) * 7200 // period
    assert max(abs(got[k] - v) / v for k, v in expected.items()) < 1e-12


def test_interval_edges_unaligned_end_and_duplicate_points(aws: str) -> None:
    """[start, end): a point at start is in, one at end (or later) out; a point in the last, partial period of
    an end that is not on the period grid is in; before start is out; two points of one series at one time (a
    retry, a correction) give one row, their mean."""
    ec2, cw = _clients(aws)
    (iid,) = _launch(ec2, 1, "api")
    cpu = METRICS["cpu_utilization"]

    def put(points: list[tuple[timedelta, float]]) -> None:
        cw.put_metric_data(Namespace=cpu.namespace, MetricData=[
            {"MetricName": cpu.cloudwatch_name, "Dimensions": [{"Name": INSTANCE_DIMENSION, "Value": iid}],
             "Timestamp": START + offset, "Value": v, "Unit": cpu.unit} for offset, v in points])

    s = timedelta(seconds=1)
    put([(-1 * s, 11.0), (0 * s, 1.0), (30 * s, 3.0), (130 * s, 9.0), (179 * s, 5.0), (180 * s, 7.0),
         (181 * s, 13.0)])
    put([(60 * s, 20.0), (60 * s, 40.0), (60 * s, 40.0)])  # one minute published three times

    def read(end: timedelta, period: int = 60) -> dict[float, float]:
        rows = _rows(extract(cw, ec2, region=REGION, start=START, end=START + end, period=period))
        assert {(i, m) for i, m, _ in rows} == {(iid, "cpu_utilization")}
        return {ts - START.timestamp(): v for (_, _, ts), v in rows.items()}

    assert read(180 * s) == {0: 2.0, 60: pytest.approx(100 / 3), 120: 7.0}
    assert read(150 * s) == {0: 2.0, 60: pytest.approx(100 / 3), 120: 9.0}  # end mid-period: 2:10 in, 2:59 out
    assert read(180 * s, period=300) == {0: pytest.approx((1 + 3 + 100 + 9 + 5) / 7)}  # 3:00 and later out
    assert read(1 * s) == {0: 1.0}


def test_a_region_without_tagged_instances_gives_an_empty_frame_without_calls(aws: str) -> None:
    ec2, cw = _clients(aws)
    untagged = _launch(ec2, 2, None, Name="jump-host")
    _publish(cw, untagged, range(3))
    calls = _recorded_calls(cw)
    cols = extract(cw, ec2, region=REGION, start=START, end=START + timedelta(minutes=3))
    assert len(cols) == 0 and not calls
    assert cols.region == REGION
    assert cols.ts.size == 0 and not cols.services and not cols.instances


def test_refreshes_read_each_point_once_across_bootstrap_and_folds(aws_conn_env: str, warehouse_conn_env: str
                                                                   ) -> None:
    """refresh_region end to end on hand-made points: the hourly bootstrap reads [H-1h, H) (the end of the run
    floored to the hour: one sample per series), the next run reads only [H, H+10 min) at 60 s (ten per series,
    the point at H by the fold only); a run with nothing new reads nothing."""
    from shadowing.orchestration.capacity import refresh_region

    ec2, cw = _clients(aws_conn_env)
    ids = _launch(ec2, 3, "api")
    hour = START + timedelta(hours=1)
    _publish(cw, ids, range(-60, 75))  # minutes of [H-2h, H+15 min)
    kw: dict[str, Any] = {"bootstrap": timedelta(hours=1), "window_periods": 6}
    first = refresh_region(REGION, end=hour + timedelta(minutes=5, seconds=20), **kw)
    assert (first["period"], first["rows"]) == (3600, 3 * len(METRICS))
    assert first["window"] == {"start": "2025-06-02T12:00:00Z", "end": "2025-06-02T13:00:00Z"}
    second = refresh_region(REGION, end=hour + timedelta(minutes=10, seconds=20), **kw)
    assert (second["period"], second["rows"]) == (60, 3 * len(METRICS) * 10)
    assert second["window"] == {"start": "2025-06-02T12:00:00Z", "end": "2025-06-02T13:10:00Z"}  # cumulative
    assert refresh_region(REGION, end=hour + timedelta(minutes=10, seconds=59), **kw)["skipped"]


@pytest.mark.parametrize("bootstrap_period", [3600, 60])
def test_a_bootstrap_length_off_the_period_grid_still_reads_its_history(aws_conn_env: str, warehouse_conn_env: str,
                                                                         bootstrap_period: int) -> None:
    """Regression: bootstrap_hours=0.3333 put the start at 12:40:00.12; the server rounds StartTime down and
    labels the first period 12:40:00, which extraction dropped as before the interval — at an hourly period
    that was the whole history ("no usable metric rows"), at 60 s the first minute of every series. The
    bootstrap now starts on the period grid."""
    from shadowing.orchestration.capacity import refresh_region

    ec2, cw = _clients(aws_conn_env)
    ids = _launch(ec2, 2, "api")
    _publish(cw, ids, range(60))
    end = START + timedelta(hours=1)
    result = refresh_region(REGION, end=end, bootstrap=timedelta(hours=0.3333), bootstrap_period=bootstrap_period,
                            window_periods=None)
    start = "2025-06-02T12:00:00Z" if bootstrap_period == 3600 else "2025-06-02T12:40:00Z"
    assert result["window"] == {"start": start, "end": "2025-06-02T13:00:00Z"}
    assert result["rows"] == 2 * len(METRICS) * (1 if bootstrap_period == 3600 else 20)


def test_refresh_of_a_region_without_tagged_instances_fails_with_a_reason(aws_conn_env: str,
                                                                          warehouse_conn_env: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from shadowing.orchestration.capacity import refresh_region
    from shadowing.warehouse import open_warehouse
    from shadowing.warehouse.store import latest_valid_fingerprint

    ec2, cw = _clients(aws_conn_env)
    _publish(cw, _launch(ec2, 1, None), range(3))
    # not retried (the inventory would be the same), and the reason names the tag to set
    with pytest.raises(AirflowFailException, match=f"{REGION}: no EC2 instance tagged 'shadowing:service'"):
        refresh_region(REGION, end=START + timedelta(minutes=3), bootstrap=timedelta(minutes=3), bootstrap_period=60)
    assert latest_valid_fingerprint(open_warehouse(warehouse_conn_env), REGION) is None

    # Once the region has a fingerprint, losing every tagged instance keeps it (decayed) and says why.
    tagged = _launch(ec2, 2, "api")
    _publish(cw, tagged, range(3, 6), offset=1)
    first = refresh_region(REGION, end=START + timedelta(minutes=6), bootstrap=timedelta(minutes=3),
                           bootstrap_period=60)
    ec2.delete_tags(Resources=tagged, Tags=[{"Key": T.SERVICE}])
    later = refresh_region(REGION, end=START + timedelta(minutes=9), bootstrap=timedelta(minutes=3),
                           bootstrap_period=60)
    assert later["valid"] and not later["skipped"] and later["id"] != first["id"]
    stored = latest_valid_fingerprint(open_warehouse(warehouse_conn_env), REGION)
    assert stored is not None and stored.id == later["id"]
    assert stored.payload["warnings"][0].startswith(f"{REGION}: no EC2 instance tagged 'shadowing:service'")
    assert stored.payload["services"]["api"]["metrics"]["cpu_utilization"]["count"] == 2 * 3  # nothing lost


def test_agent_metrics_published_with_appended_dimensions_are_found(aws: str) -> None:
    """The CloudWatch agent's append_dimensions (ImageId, InstanceType, AutoScalingGroupName) publishes memory
    under richer dimension sets than InstanceId, and a query matches sets exactly (moto as CloudWatch): each
    instance is read under the sets ListMetrics shows for it, InstanceId alone when that one exists."""
    ec2, cw = _clients(aws)
    plain, appended, both, retyped = _launch(ec2, 4, "api")
    memory = METRICS["memory_utilization"]

    def dims(iid: str, itype: str = "t3.micro") -> list[dict[str, str]]:
        return [{"Name": "ImageId", "Value": "ami-0abc"}, {"Name": INSTANCE_DIMENSION, "Value": iid},
                {"Name": "InstanceType", "Value": itype}]

    only = {plain: None, both: None}  # InstanceId alone (as the world publishes)
    datums: list[dict[str, Any]] = []
    want: dict[Key, float] = {}
    for minute in range(4):
        at = START + timedelta(minutes=minute)
        for k, iid in enumerate((plain, appended, both, retyped)):
            v = 10.0 * (k + 1) + minute
            if iid in only:
                datums.append({"MetricName": memory.cloudwatch_name, "Timestamp": at, "Value": v, "Unit": "Percent",
                               "Dimensions": [{"Name": INSTANCE_DIMENSION, "Value": iid}]})
            if iid in (appended, both):  # `both`: the agent's aggregation_dimensions [["InstanceId"]] as well
                datums.append({"MetricName": memory.cloudwatch_name, "Timestamp": at, "Dimensions": dims(iid),
                               "Value": v if iid == appended else v + 0.5, "Unit": "Percent"})
            if iid == retyped:  # resized after two minutes: a new InstanceType, a new dimension set
                datums.append({"MetricName": memory.cloudwatch_name, "Timestamp": at, "Unit": "Percent",
                               "Dimensions": dims(iid, "t3.micro" if minute < 2 else "m5.large"), "Value": v})
            want[(iid, "memory_utilization", at.timestamp())] = v
    put_metric_datums(cw, {memory.namespace: datums})
    calls = _recorded_calls(cw)
    cols = extract(cw, ec2, region=REGION, start=START, end=START + timedelta(minutes=4))
    got = {k: v for k, v in _rows(cols).items() if k[1] == "memory_utilization"}
    assert got == want  # `both` read under InstanceId alone (its +0.5 set not mixed in)
    asked = [q["MetricStat"]["Metric"] for c in calls for q in c["MetricDataQueries"]
             if q["MetricStat"]["Metric"]["MetricName"] == memory.cloudwatch_name]
    per_instance = Counter(next(d["Value"] for d in m["Dimensions"] if d["Name"] == INSTANCE_DIMENSION)
                           for m in asked)
    assert per_instance == {plain: 1, appended: 1, both: 1, retyped: 2}
