"""AWS inputs of the mapper: CloudWatch Logs lines (flow + discovery), the flow-log format from EC2
describe_flow_logs, the time-ranged inventory from EC2 instances/ENIs, configs from a folder or S3 prefix.
Clients are passed in (the DAG builds them through the Airflow connection)."""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from shadowing.aws import tags as tag_keys
from shadowing.dependencies.configs import ConfigFindings, extract_configs
from shadowing.dependencies.flowlogs import DEFAULT_V2, _header_fields, parse_log_format
from shadowing.dependencies.inventory import Inventory, inventory_from_records

log = logging.getLogger(__name__)


def fetch_log_lines(logs: Any, group: str, start: datetime, end: datetime) -> list[str]:
    """Every message of `group` in [start, end) (filter_log_events, paginated); [] if the group is absent."""
    lines: list[str] = []
    paginator = logs.get_paginator("filter_log_events")
    try:
        for page in paginator.paginate(logGroupName=group, startTime=int(start.timestamp() * 1000),
                                       endTime=int(end.timestamp() * 1000)):
            lines.extend(event["message"] for event in page.get("events", []))
    except logs.exceptions.ResourceNotFoundException:
        log.warning("log group %s does not exist: no lines", group)
    return lines


def flow_log_fields(ec2: Any, group: str, lines: list[str]) -> tuple[list[str], list[str]]:
    """(field names, data lines): LogFormat of the flow log delivering to `group`, else a header line, else v2."""
    fields: list[str] | None = None
    try:
        described = ec2.describe_flow_logs(Filters=[{"Name": "log-group-name", "Values": [group]}])
        formats = [f.get("LogFormat") for f in described.get("FlowLogs", []) if f.get("LogFormat")]
        if formats:
            fields = parse_log_format(formats[0])
    except Exception as exc:  # noqa: BLE001 - an emulator without the call still has header/default
        log.warning("describe_flow_logs failed (%s); using the header line or the default format", exc)
    data = []
    for line in lines:
        header = _header_fields(line)
        if header:
            fields = fields or header
            continue
        data.append(line)
    return fields or DEFAULT_V2, data


def ec2_inventory(ec2: Any) -> Inventory:
    """Private IPs of instances (and tagged ENIs) → `shadowing:service`, valid from launch time."""
    records: list[dict[str, object]] = []
    seen: set[str] = set()
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                service = tag_keys.from_aws(instance.get("Tags")).get(tag_keys.SERVICE)
                if not service:
                    continue
                state = (instance.get("State") or {}).get("Name")
                ips = {i.get("PrivateIpAddress") for i in instance.get("NetworkInterfaces", [])} | \
                    {a.get("PrivateIpAddress") for i in instance.get("NetworkInterfaces", [])
                     for a in i.get("PrivateIpAddresses", [])} | {instance.get("PrivateIpAddress")}
                for ip in sorted(filter(None, ips)):
                    seen.add(ip)
                    records.append({"ip": ip, "service": service, "valid_from": instance.get("LaunchTime"),
                                    "valid_to": None, "kind": "service" if state != "terminated" else "service"})
    for page in ec2.get_paginator("describe_network_interfaces").paginate():
        for eni in page.get("NetworkInterfaces", []):
            tags = tag_keys.from_aws(eni.get("TagSet"))
            ip = eni.get("PrivateIpAddress")
            if ip in seen or not ip:
                continue
            if _is_load_balancer_eni(eni):  # before tags: a tagged ELB ENI is still the load balancer
                records.append({"ip": ip, "service": tags.get(tag_keys.SERVICE) or "load-balancer",
                                "valid_from": None, "valid_to": None, "kind": "load_balancer"})
            elif tags.get(tag_keys.SERVICE):
                records.append({"ip": ip, "service": tags[tag_keys.SERVICE], "valid_from": None, "valid_to": None,
                                "kind": "service"})
            elif eni.get("RequesterManaged"):  # NAT and other AWS-managed ENIs: known, never nodes
                records.append({"ip": ip, "service": "requester-managed", "valid_from": None, "valid_to": None,
                                "kind": "load_balancer"})
    return inventory_from_records(records)


def _is_load_balancer_eni(eni: dict[str, Any]) -> bool:
    """ELB ENIs as AWS marks them: requester `amazon-elb`, an ELB interface type, or the `ELB …` description."""
    return (eni.get("RequesterId") == "amazon-elb"
            or str(eni.get("InterfaceType") or "") in {"network_load_balancer", "gateway_load_balancer"}
            or str(eni.get("Description") or "").startswith("ELB "))


def load_configs(location: str, s3: Any | None = None) -> ConfigFindings:
    """Configs from a local folder, or from s3://bucket/prefix copied to a temporary folder first."""
    if not location.startswith("s3://"):
        if not Path(location).exists():
            log.warning("configs folder %s does not exist: no config evidence", location)
            return ConfigFindings()
        return extract_configs([location])
    if s3 is None:
        raise ValueError("an S3 client is needed for an s3:// configs location")
    bucket, _, prefix = location[len("s3://"):].partition("/")
    with tempfile.TemporaryDirectory(prefix="shadowing-configs-") as folder:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):].lstrip("/")
                if not relative or relative.endswith("/"):
                    continue
                target = (Path(folder) / relative).resolve()
                if not target.is_relative_to(Path(folder).resolve()):  # "../" in a key must not escape
                    log.warning("s3://%s/%s: key leaves the configs prefix, skipped", bucket, item["Key"])
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
        return extract_configs([folder])
