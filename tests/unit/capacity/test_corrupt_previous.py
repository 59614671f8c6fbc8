"""A corrupt sketch in the previous fingerprint is refused naming the fingerprint and the sketch's owner
(service, instance, metric), not its position in a decoded batch."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from shadowing.capacity.fingerprint import build, dumps, fold, loads
from shadowing.errors import InputError
from shadowing.metrics.frame import from_pandas

TS = pd.date_range("2025-03-03", periods=120, freq="min", tz="UTC")
FRAME = pd.concat([pd.DataFrame({"timestamp": TS, "service": "api", "instance_id": f"i-{i}",
                                 "metric": "cpu_utilization", "value": 10.0 + i}) for i in range(3)])


@pytest.mark.parametrize(("path", "text", "field", "reason"), [
    (("instances", "by_id", "i-1", "cpu_utilization", "sketch"), "!!garbage",
     "services.api.instances.by_id.i-1.cpu_utilization", "not a LogSketch: not base64 text"),
    (("aggregate", "cpu_utilization", "sketch"), "AAAA", "services.api.aggregate.cpu_utilization",
     "not a LogSketch: not zlib data"),
    (("metrics", "cpu_utilization", "decayed_sketch"), "zzzz", "services.api.metrics.cpu_utilization",
     "not a weighted LogSketch: not zlib data"),
])
def test_a_corrupt_sketch_is_named_by_its_owner(path: tuple[str, ...], text: str, field: str, reason: str) -> None:
    previous = json.loads(dumps(build(from_pandas(FRAME))))
    node = previous["services"]["api"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = text
    later = FRAME.assign(timestamp=FRAME["timestamp"] + pd.Timedelta(hours=2))
    with pytest.raises(InputError) as caught:
        fold(loads(json.dumps(previous), source="prev.json"), from_pandas(later), previous_source="prev.json")
    assert caught.value.source == "prev.json" and caught.value.field == field
    assert str(caught.value).startswith(f"prev.json field '{field}': cannot be folded into: {reason}")
