"""GetMetricData results are checked before they become rows: unknown Ids, lengths, numbers and times."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from shadowing.errors import InputError
from shadowing.metrics.cloudwatch import extract

START, END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 1, tzinfo=UTC)


class _Replay:
    """Answers every call with the given results, renaming "first" to the first query's Id (moto never sends
    malformed results, so these responses are replayed)."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results = results

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        first = kwargs["MetricDataQueries"][0]["Id"]
        return {"MetricDataResults": [{**r, "Id": first if r["Id"] == "first" else r["Id"]} for r in self.results]}


def _extract(results: list[dict[str, Any]]) -> Any:
    return extract(_Replay(results), None, region="eu-west-1", start=START, end=END, window_periods=None,
                   instances={"i-1": "web"}, dimension_sets={})


def test_datetimes_and_iso_text_give_the_same_rows() -> None:
    stamps = [datetime(2025, 1, 1, 0, m, tzinfo=UTC) for m in (0, 1)]
    from_boto = _extract([{"Id": "first", "Timestamps": stamps, "Values": [1.0, 2.0]}])
    from_text = _extract([{"Id": "first", "Timestamps": ["2025-01-01T00:00:00Z", "2025-01-01T00:01:00+00:00"],
                           "Values": [1, 2.0]}])
    assert list(from_boto.values) == list(from_text.values) == [1.0, 2.0]
    assert list(from_boto.ts) == list(from_text.ts)
    assert {from_boto.instances[i] for i in from_boto.instance} == {"i-1"}


def test_a_result_for_an_id_not_asked_for_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shadowing.metrics.cloudwatch"):
        frame = _extract([{"Id": "zz", "Timestamps": [START], "Values": [5.0]},
                          {"Id": "first", "Timestamps": [START], "Values": [7.0]}])
    assert list(frame.values) == [7.0]  # the good result survives
    assert "'zz'" in caplog.text and "not asked for" in caplog.text


def test_a_failed_status_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shadowing.metrics.cloudwatch"):
        frame = _extract([{"Id": "first", "Timestamps": [], "Values": [], "StatusCode": "Forbidden",
                           "Messages": [{"Code": "AccessDenied", "Value": "not authorized"}]}])
    assert len(frame) == 0
    assert "Forbidden" in caplog.text and "not authorized" in caplog.text


@pytest.mark.parametrize(("result", "field", "words"), [
    ({"Timestamps": [START, END], "Values": [1.0]}, "Values", "2 Timestamps but 1 Values"),
    ({"Timestamps": [START], "Values": ["1.5"]}, "Values", "non-number: '1.5'"),
    ({"Timestamps": [START], "Values": [True]}, "Values", "non-number: True"),
    ({"Timestamps": [START], "Values": [[1.0]]}, "Values", "non-number"),
    ({"Timestamps": ["yesterday"], "Values": [1.0]}, "Timestamps", "Timestamps[0] is not a time: 'yesterday'"),
    ({"Timestamps": [START, 17], "Values": [1.0, 2.0]}, "Timestamps", "Timestamps[1] is not a time: 17"),
    ({"Timestamps": [START]}, "Values", "must both be lists"),
])
def test_a_malformed_result_is_refused_naming_query_and_field(result: dict[str, Any], field: str,
                                                              words: str) -> None:
    with pytest.raises(InputError) as caught:
        _extract([{"Id": "first", **result}])
    message = str(caught.value)
    assert message.startswith(f"cloudwatch:eu-west-1 field {field!r}")
    assert "(i-1 cpu_utilization)" in message and words in message
