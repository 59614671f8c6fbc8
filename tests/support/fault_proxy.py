"""A fault-injecting HTTP proxy in front of the moto server.

Point boto3 at :attr:`FaultProxy.url` instead of the emulator. For each request the proxy decides:

* **throttle** (share ``throttle_rate``): answer with the service's REAL throttling error in that service's wire
  protocol, without forwarding — EC2 ``RequestLimitExceeded`` (EC2 XML, 503), query-protocol ``Throttling``
  (ELBv2, RDS, STS, …; ``<ErrorResponse><Error><Type>Sender</Type>…``, 400), JSON ``ThrottlingException``
  (``x-amzn-ErrorType``, 400), Route 53 REST-XML ``Throttling`` / ``PriorRequestNotComplete`` (400), S3
  ``SlowDown`` (503), and Smithy RPCv2 CBOR (``smithy-protocol: rpc-v2-cbor`` request header) with a CBOR body.
  CloudWatch's model lists ``smithy-rpc-v2-cbor, json, query``; botocore 1.44 picks the first it supports in
  its own priority order, which is ``json`` — so CloudWatch is answered in JSON with the query-compatible
  ``x-amzn-query-error: Throttling;Sender`` header (botocore then reports ``Throttling``, as real CloudWatch
  does); a client that does speak CBOR gets CBOR;
* **drop** (share ``drop_rate``, limited to ``drop_operations`` when given): FORWARD the call, let it take
  effect, then close the connection without answering — the call happened, the client never learns it;
* otherwise forward transparently.

The service is read from the SigV4 credential scope, the operation from the protocol's usual place.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host"}


def cbor_encode(value: Any) -> bytes:
    """Minimal CBOR encoder (maps, text strings, small ints) — enough for an error body."""
    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        if n < 256:
            return bytes([major << 5 | 24, n])
        if n < 65536:
            return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
        return bytes([major << 5 | 26]) + n.to_bytes(4, "big")

    if isinstance(value, str):
        raw = value.encode()
        return head(3, len(raw)) + raw
    if isinstance(value, bool) or value is None:
        return bytes([0xF5 if value is True else 0xF4 if value is False else 0xF6])
    if isinstance(value, int) and value >= 0:
        return head(0, value)
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in value.items())
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(cbor_encode(v) for v in value)
    raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


def protocol_of(service: str, headers: Any) -> str:
    """The wire protocol of a request: ec2 | query | json | rest-xml | s3 | cbor."""
    if (headers.get("smithy-protocol") or "").lower() == "rpc-v2-cbor":
        return "cbor"
    if service == "ec2":
        return "ec2"
    if service == "route53":
        return "rest-xml"
    if service == "s3":
        return "s3"
    if headers.get("X-Amz-Target") or "amz-json" in (headers.get("Content-Type") or ""):
        return "json"
    return "query"


# Former query services answering in JSON/CBOR name the legacy error code in this header.
QUERY_COMPATIBLE_SERVICES = {"monitoring", "sqs"}


def throttling_response(protocol: str, operation: str = "", service: str = "") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the service's own throttling error in ``protocol``."""
    request_id = str(uuid.uuid4())
    compat = {"x-amzn-query-error": "Throttling;Sender"} if service in QUERY_COMPATIBLE_SERVICES else {}
    if protocol == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
                f"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>{request_id}</RequestID>"
                f"</Response>")
        return 503, {"Content-Type": "text/xml;charset=UTF-8"}, body.encode()
    if protocol == "query":
        body = (f'<ErrorResponse xmlns="http://shadowing.test/"><Error><Type>Sender</Type><Code>Throttling</Code>'
                f"<Message>Rate exceeded</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
        return 400, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body.encode()
    if protocol == "json":
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        return 400, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": "ThrottlingException",
                     "x-amzn-RequestId": request_id, **compat}, body.encode()
    if protocol == "rest-xml":
        code, message = (("PriorRequestNotComplete", "The request was rejected because Route 53 was still "
                          "processing a prior request.") if operation == "ChangeResourceRecordSets"
                         else ("Throttling", "Rate exceeded"))
        body = (f'<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
                f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>")
        return 400, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body.encode()
    if protocol == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your '
                f"request rate.</Message><RequestId>{request_id}</RequestId></Error>")
        return 503, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body.encode()
    if protocol == "cbor":
        body = cbor_encode({"__type": "com.amazon.coral.availability#ThrottlingException",
                            "message": "Rate exceeded"})
        return 400, {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor",
                     "x-amzn-RequestId": request_id, **compat}, body
    raise ValueError(f"unknown protocol {protocol!r}")


def operation_of(protocol: str, method: str, path: str, headers: Any, body: bytes) -> str:
    """Best-effort operation name (RunInstances, DescribeTargetHealth, …) for filtering and stats."""
    if protocol in ("ec2", "query"):
        try:
            return parse_qs(body.decode(errors="replace")).get("Action", [""])[0] or \
                parse_qs(urlsplit(path).query).get("Action", [""])[0]
        except Exception:
            return ""
    if protocol == "json":
        return (headers.get("X-Amz-Target") or "").rpartition(".")[2]
    if protocol == "cbor":
        return path.rstrip("/").rpartition("/")[2]
    if protocol == "rest-xml":
        if method == "POST" and path.endswith("/rrset") or path.endswith("/rrset/"):
            return "ChangeResourceRecordSets"
        return f"{method} {urlsplit(path).path}"
    return f"{method} {urlsplit(path).path}"


class FaultProxy:
    """Loopback proxy injecting throttling and dropped responses in front of ``upstream`` (a moto URL)."""

    def __init__(self, upstream: str, *, throttle_rate: float = 0.0, drop_rate: float = 0.0,
                 drop_operations: Iterable[str] | None = None, throttle_services: Iterable[str] | None = None,
                 seed: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.throttle_rate, self.drop_rate = throttle_rate, drop_rate
        self.drop_operations = set(drop_operations) if drop_operations is not None else None
        self.throttle_services = set(throttle_services) if throttle_services is not None else None
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.by_operation: Counter[tuple[str, str, str]] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence access logs
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.serve(self, body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _roll(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        match = _SCOPE.search(handler.headers.get("Authorization") or "")
        service = match.group(2) if match else "?"
        protocol = protocol_of(service, handler.headers)
        operation = operation_of(protocol, handler.command, handler.path, handler.headers, body)
        throttle_applies = self.throttle_services is None or service in self.throttle_services
        if self.throttle_rate and throttle_applies and self._roll() < self.throttle_rate:
            status, headers, payload = throttling_response(protocol, operation, service)
            self._count("throttled", service, operation)
            self._reply(handler, status, headers, payload)
            return
        status, headers, payload = self._forward(handler, body)
        drop_applies = self.drop_operations is None or operation in self.drop_operations
        if self.drop_rate and drop_applies and self._roll() < self.drop_rate:
            self._count("dropped", service, operation)
            handler.close_connection = True  # the call took effect upstream; the client gets no answer
            return
        self._count("forwarded", service, operation)
        self._reply(handler, status, headers, payload)

    def _count(self, outcome: str, service: str, operation: str) -> None:
        with self._rng_lock:
            self.stats[outcome] += 1
            self.by_operation[(outcome, service, operation)] += 1

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            return response.status, {k: v for k, v in response.getheaders()
                                     if k.lower() not in _HOP_BY_HOP | {"content-length"}}, payload
        finally:
            conn.close()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
