"""Per-world state kept in AWS itself (an SSM parameter), so `publish` and `chaos` need only the endpoint URL."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from shadowing.aws.clients import RETRY_CONFIG, AwsTarget
from shadowing.errors import EmulatorUnavailable, ShadowingError

STATE_PARAMETER = "/shadowing/world/state"
# world-local tag keys (the shared ones are in shadowing.aws.tags)
ORDINAL = "shadowing:ordinal"
VALID_FROM = "shadowing:valid-from"
VALID_TO = "shadowing:valid-to"
ENDPOINT_KIND = "shadowing:endpoint-kind"
_PROBE_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=10)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass
class WorldState:
    world_id: str
    app: str
    seed: int
    services: int | None
    instances_per_service: int | None
    region: str
    history_start: str
    history_step: int
    replaced_at: str
    created_at: str
    history_seeded_until: str | None = None
    live_published_until: str | None = None
    failed: bool = False
    vpc_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class WorldClients:
    """The boto3 clients the world needs, all for one region (created at the edge, passed in)."""

    ec2: Any
    elbv2: Any
    route53: Any
    cloudwatch: Any
    logs: Any
    rds: Any
    s3: Any
    ssm: Any
    region: str

    @classmethod
    def connect(cls, endpoint_url: str | None, region: str = "us-east-1") -> WorldClients:
        target = AwsTarget(endpoint_url=endpoint_url)
        if endpoint_url and target.session(region).get_credentials() is None:
            # The emulated world is a demo tool: the emulator accepts any credentials, so when the shell has
            # none, use recognisably fake ones rather than fail.
            target = AwsTarget(endpoint_url=endpoint_url, access_key_id="AKIASHADOWINGWORLD",
                               secret_access_key="shadowing-world-emulator")
        probe(target, region)
        session = target.session(region)  # one session: its model loaders are shared by all clients

        def mk(svc: str, config: Config = RETRY_CONFIG) -> Any:
            return session.client(svc, endpoint_url=target.endpoint_url, config=config)
        # bulk PutMetricData: botocore's client-side validation costs as much as the request itself
        cloudwatch = mk("cloudwatch", RETRY_CONFIG.merge(Config(parameter_validation=False)))
        return cls(mk("ec2"), mk("elbv2"), mk("route53"), cloudwatch, mk("logs"), mk("rds"), mk("s3"),
                   mk("ssm"), region)


def probe(target: AwsTarget, region: str) -> None:
    """Fail fast with one line when the endpoint does not answer (no 10× adaptive retry on a dead port)."""
    try:
        target.client("ssm", region, _PROBE_CONFIG).describe_parameters(MaxResults=1)
    except EndpointConnectionError as exc:
        raise EmulatorUnavailable(f"AWS endpoint {target.endpoint_url or 'default'} is unreachable: {exc}") from exc
    except ClientError:
        return  # it answered
    except BotoCoreError as exc:
        raise EmulatorUnavailable(f"AWS endpoint {target.endpoint_url or 'default'} failed: {exc}") from exc


def load_state(ssm: Any) -> WorldState | None:
    try:
        raw = ssm.get_parameter(Name=STATE_PARAMETER)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise
    data = json.loads(raw)
    return WorldState(**data)


def require_state(ssm: Any) -> WorldState:
    state = load_state(ssm)
    if state is None:
        raise ShadowingError(f"no emulated world found (SSM parameter {STATE_PARAMETER} is missing): run "
                             "`python -m shadowing world seed` first")
    return state


def save_state(ssm: Any, state: WorldState) -> None:
    ssm.put_parameter(Name=STATE_PARAMETER, Value=state.to_json(), Type="String", Overwrite=True)
