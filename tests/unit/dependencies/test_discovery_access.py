"""Discovery logs (Consul, Eureka, Cloud Map) and Envoy/Istio access logs."""

from __future__ import annotations

import json
from pathlib import Path

from shadowing.dependencies.accesslogs import parse_access_file
from shadowing.dependencies.discovery import parse_discovery_file, parse_discovery_lines
from shadowing.dependencies.inventory import inventory_from_records

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "deps"


def test_consul_agent_log_registrations_are_nodes() -> None:
    result = parse_discovery_file(FIXTURES / "discovery-logs" / "consul-agent.log", None)
    assert set(result.nodes) == {"consul-esm"}  # "name:uuid" → name; a bare UUID names nothing
    assert result.references == []  # the agent's own requests come from 127.0.0.1: no caller
    assert any("without a service name" in w for w in result.warnings)


def test_eureka_log_gives_nodes_never_edges() -> None:
    result = parse_discovery_file(FIXTURES / "discovery-logs" / "eureka-server.log", None)
    assert set(result.nodes) == {"eureka", "student-service"}
    assert result.references == []


def test_consul_lookups_are_edges_from_the_caller_address() -> None:
    inventory = inventory_from_records([{"ip": "10.0.1.7", "service": "search"}])
    lines = [
        '2024/03/03 02:16:13 [INFO] agent: Synced service "srv-geo"',
        "2024/03/03 02:16:16 [DEBUG] http: Request GET /v1/health/service/srv-geo?passing=1 (565µs) "
        "from=10.0.1.7:49168",
        "2024-03-03T02:17:16.000Z [DEBUG] agent.http: Request finished: method=GET "
        "url=/v1/health/service/srv-geo?passing=1 from=10.0.1.7:49170 latency=1ms",
        "2024/03/03 02:18:16 [DEBUG] http: Request GET /v1/health/service/srv-rate (1ms) from=127.0.0.1:1",
    ]
    result = parse_discovery_lines(lines, inventory)
    assert set(result.nodes) == {"srv-geo"}
    assert [(r.caller, r.target, r.count) for r in result.references] == [("search", "srv-geo", 2)]
    assert result.stats["lookups_unattributed"] == 1


def test_cloud_map_events() -> None:
    inventory = inventory_from_records([{"ip": "10.0.2.9", "service": "orders"}])
    lines = [json.dumps({"eventName": "RegisterInstance", "eventTime": "2024-01-01T00:00:00Z",
                         "requestParameters": {"serviceName": "payments"}}),
             json.dumps({"eventName": "DiscoverInstances", "eventTime": "2024-01-01T00:01:00Z",
                         "sourceIPAddress": "10.0.2.9",
                         "requestParameters": {"namespaceName": "prod.local", "serviceName": "payments"}})]
    result = parse_discovery_lines(lines, inventory)
    assert set(result.nodes) == {"payments"}
    assert [(r.caller, r.target) for r in result.references] == [("orders", "payments")]


def test_istio_access_log_both_sidecars_count_once() -> None:
    inventory = inventory_from_records([{"ip": "10.44.1.23", "service": "sleep"},
                                        {"ip": "10.44.1.27", "service": "httpbin"}])
    result = parse_access_file(FIXTURES / "flowlogs" / "envoy-istio" / "istio-access-log-examples.log", inventory)
    assert [(r.caller, r.target, r.port, r.count) for r in result.references] == \
        [("sleep", "httpbin.foo.svc.cluster.local", 8000, 1)]
    assert "httpbin" in result.nodes
