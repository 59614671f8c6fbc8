"""The fault proxy's throttling answers parse, with botocore's own parsers, as each service's throttling code."""

from __future__ import annotations

import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.parsers import create_parser

from tests.support.fault_proxy import cbor_encode, protocol_of, throttling_response


@pytest.mark.parametrize(("service_model", "protocol", "signing", "code"), [
    ("ec2", "ec2", "ec2", "RequestLimitExceeded"),
    ("elbv2", "query", "elasticloadbalancing", "Throttling"),
    ("rds", "query", "rds", "Throttling"),
    ("logs", "json", "logs", "ThrottlingException"),
    ("cloudwatch", "json", "monitoring", "Throttling"),
    ("route53", "rest-xml", "route53", "Throttling"),
    ("s3", "s3", "s3", "SlowDown"),
])
def test_throttling_answers_parse_as_throttling(service_model: str, protocol: str, signing: str,
                                                code: str) -> None:
    status, headers, body = throttling_response(protocol, "", signing)
    wire = {"ec2": "ec2", "query": "query", "json": "json", "rest-xml": "rest-xml", "s3": "rest-xml"}[protocol]
    parsed = create_parser(wire).parse({"status_code": status, "headers": {k.lower(): v for k, v in headers.items()},
                                        "body": body}, None)
    assert parsed["Error"]["Code"] == code
    model = ServiceModel(Loader().load_service_model(service_model, "service-2"))
    assert wire in (model.metadata.get("protocols") or [model.protocol]) or model.protocol == wire


def test_cbor_answer_parses_with_the_rpcv2_parser() -> None:
    status, headers, body = throttling_response("cbor", "", "monitoring")
    parsed = create_parser("smithy-rpc-v2-cbor").parse(
        {"status_code": status, "headers": {k.lower(): v for k, v in headers.items()}, "body": body}, None)
    assert parsed["Error"]["Code"] == "Throttling"
    assert cbor_encode({"a": 1}) == b"\xa1\x61a\x01"


def test_protocol_detection() -> None:
    assert protocol_of("monitoring", {"smithy-protocol": "rpc-v2-cbor"}) == "cbor"
    assert protocol_of("logs", {"X-Amz-Target": "Logs_20140328.DescribeLogGroups"}) == "json"
    assert protocol_of("rds", {}) == "query"
