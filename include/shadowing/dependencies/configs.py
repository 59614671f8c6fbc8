"""Configuration extractors: Kubernetes (incl. rendered Helm), docker-compose, shared address books, nginx,
Spring, Consul service definitions → a service catalog plus per-caller references.

Two passes: the first registers every service under all its names (Service, workload, container, hostname,
links), the second turns addresses into references, so that the order of files does not matter.

A file mounted into several services (a shared "address book") is not an edge from every reader to every
entry: a key becomes an edge only for the reader whose own configuration names it; the other keys merely
tell who *could* be reached (they corroborate depends_on) and which entries point nowhere (dangling).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from shadowing.dependencies.model import Catalog, Reference, infer_kind
from shadowing.errors import InputError

log = logging.getLogger(__name__)

CONFIG_SUFFIXES = {".yaml", ".yml", ".json", ".properties", ".conf", ".hcl", ".env"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod",
                  "ReplicationController"}
READ_KINDS = WORKLOAD_KINDS | {"Service", "ConfigMap", "NetworkPolicy"}
ADDRESS_ENV = re.compile(r"(ADDR|ADDRESS|HOST|HOSTS|URL|URI|ENDPOINT|SERVER|SERVERS|SERVICE|BROKER|BROKERS|"
                         r"DSN|UPSTREAM|TARGET)S?$", re.IGNORECASE)
URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.:-]*://(?:[^@/\s,;\"']+@)?([A-Za-z0-9_.-]+)(?::(\d{1,5}))?")
HOSTPORT_RE = re.compile(r"(?<![\w./:-])([A-Za-z][A-Za-z0-9_.-]*):(\d{2,5})\b")
TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
INTERNAL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)?(\.svc(\.cluster\.local)?)?$")
MAX_DEPTH = 200  # nesting levels; deeper documents are hostile or broken, and would overflow the readers' stack
MAX_VALUES = 1_000_000  # values of one document with its aliases expanded
COMPOSE_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}$]*)\}")
COMPOSE_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
NOT_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "true", "false", "http", "https", "tcp", "udp", "grpc"}


@dataclass
class MountedFile:
    """A configuration file some services read (path relative to its config root)."""

    path: str
    entries: list[tuple[str, str, int | None]]  # (key, host, port)
    readers: set[str] = field(default_factory=set)


@dataclass
class ConfigFindings:
    catalog: Catalog = field(default_factory=Catalog)
    references: list[Reference] = field(default_factory=list)
    dangling: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    addressed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # caller → reachable
    files: int = 0


@dataclass
class _Workload:
    name: str
    kind: str
    labels: dict[str, str]
    image: str | None
    env: list[tuple[str, str]]  # (name, value)
    words: list[str]  # command/args/entrypoint strings
    ports: list[int]
    mounts: list[str]  # ConfigMap names or host paths
    depends_on: list[str]
    source: str
    aliases: list[str] = field(default_factory=list)


class MalformedDocument(ValueError):
    """A configuration document whose structure is not what its kind promises (e.g. metadata: 7)."""


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """`value` when a mapping, {} when absent; anything else makes the whole document unusable."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise MalformedDocument(f"{where} is {type(value).__name__}, not a mapping")


def _sequence(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise MalformedDocument(f"{where} is {type(value).__name__}, not a list")


# ---------------------------------------------------------------------------------------------- file walking


def iter_config_files(roots: Iterable[str | Path], warnings: list[str] | None = None,
                      ) -> Iterator[tuple[Path, Path]]:
    """(root, file) for every configuration file under the given folders (or the files themselves); a folder
    holding none is reported in `warnings` (a mistyped folder must not pass for an application without edges)."""
    for raw in roots:
        root = Path(raw)
        if not root.exists():
            raise InputError("configuration folder or file does not exist", source=str(root))
        if root.is_file():
            yield root.parent, root
            continue
        found = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and (path.suffix.lower() in CONFIG_SUFFIXES or path.name.startswith("docker-compose")):
                found += 1
                yield root, path
        if not found and warnings is not None:
            warnings.append(f"{root}: no configuration file (*{', *'.join(sorted(CONFIG_SUFFIXES))}, "
                            "docker-compose*) in this folder")


def _load_yaml_docs(path: Path, text: str, warnings: list[str]) -> list[Any]:
    if "{{" in text and "}}" in text and "templates" in path.parts:
        warnings.append(f"{path}: unrendered Helm template skipped (render it with `helm template` first)")
        return []
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except RecursionError:
        warnings.append(f"{path}: YAML nested more than Python can parse; file skipped")
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses: its line from its position
            line = text.count("\n", 0, exc.position) + 1
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # PyYAML's spans lines
        warnings.append(f"{path}:{line or '?'}: YAML not parsed ({problem}); file skipped")
        return []
    if any(_too_deep(doc) for doc in docs):
        warnings.append(f"{path}: YAML nested more than {MAX_DEPTH} levels deep or expanding (aliases) to more "
                        f"than {MAX_VALUES} values, which no configuration does; file skipped")
        return []
    return docs


def _too_deep(value: Any, limit: int = 0) -> bool:
    """Nesting beyond MAX_DEPTH, or more than MAX_VALUES values once YAML aliases are expanded ("billion
    laughs"): checked iteratively, since the recursive readers further on would overflow the stack or never end."""
    limit = limit or MAX_DEPTH
    stack = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return True
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


# ---------------------------------------------------------------------------------------------- addresses


def addresses_in(text: str) -> list[tuple[str, int | None]]:
    """Host names (with ports when given) mentioned in a value: URLs, host:port pairs."""
    found: list[tuple[str, int | None]] = []
    for match in URL_RE.finditer(text):
        found.append((match.group(1), int(match.group(2)) if match.group(2) else None))
    stripped = URL_RE.sub(" ", text)
    for match in HOSTPORT_RE.finditer(stripped):
        found.append((match.group(1), int(match.group(2))))
    return [(h, p) for h, p in found if h.lower() not in NOT_HOSTS]


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def book_entries(data: Any) -> list[tuple[str, str, int | None]]:
    """(key, host, port) of an address book: {key: {addr|host|address: h, port: p}} or {key: "h:p"|URL}."""
    entries: list[tuple[str, str, int | None]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict):
                host = next((value[k] for k in ("addr", "address", "host", "hostname", "server")
                             if isinstance(value.get(k), str)), None)
                if host:
                    port = value.get("port")
                    entries.append((str(key), host, int(port) if isinstance(port, int) else None))
                    continue
            for sub_key, leaf in _flatten(value, str(key)):
                if isinstance(leaf, str):
                    entries.extend((sub_key, h, p) for h, p in addresses_in(leaf))
    return entries


# ---------------------------------------------------------------------------------------------- extractors


class _Extraction:
    def __init__(self) -> None:
        self.findings = ConfigFindings()
        self.workloads: list[_Workload] = []
        self.k8s_services: list[tuple[dict[str, Any], str]] = []
        self.configmaps: dict[str, dict[str, str]] = {}
        self.policies: list[tuple[dict[str, Any], str]] = []
        self.generic: dict[str, Any] = {}  # relative path → parsed data (candidate address books)
        self.nginx: list[tuple[str, str]] = []  # (relative path, text)
        self.spring: list[tuple[str, Path, dict[str, Any]]] = []
        self.consul: list[tuple[dict[str, Any], str]] = []

    # -- pass 1: read every file ------------------------------------------------------------------------
    def read(self, root: Path, path: Path) -> None:
        rel = path.resolve().as_posix()  # absolute: mounts from compose files anywhere resolve against it
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", source=source) from exc
        self.findings.files += 1
        suffix = path.suffix.lower()
        name = path.name.lower()
        warnings = self.findings.warnings
        if suffix == ".properties" or (name.startswith(("application", "bootstrap")) and suffix in {".yml", ".yaml"}):
            data = _parse_properties(text) if suffix == ".properties" else _merge_docs(
                _load_yaml_docs(path, text, warnings))
            self.spring.append((rel, path, data))
            return
        if suffix in {".yaml", ".yml"} or name.startswith("docker-compose"):
            docs = _load_yaml_docs(path, text, warnings)
            for number, doc in enumerate(docs, start=1):
                try:
                    self._read_yaml_doc(doc, rel, source)
                except MalformedDocument as exc:  # one bad manifest never costs the others in the file
                    kind = doc.get("kind") if isinstance(doc, dict) else None
                    label = f" ({kind})" if isinstance(kind, str) else ""
                    warnings.append(f"{source} document {number}{label}: {exc}; document skipped")
            return
        if suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                warnings.append(f"{source}:{exc.lineno}: JSON not parsed ({exc.msg}); file skipped")
                return
            except RecursionError:
                data = None
            if data is None and text.strip() != "null" or _too_deep(data):
                warnings.append(f"{source}: JSON nested more than {MAX_DEPTH} levels deep or holding more than "
                                f"{MAX_VALUES} values, which no configuration does; file skipped")
                return
            if isinstance(data, dict) and ("service" in data or "services" in data) and _looks_consul(data):
                self._read_consul(data, source)
            else:
                self.generic[rel] = data
            return
        if suffix == ".hcl":
            self.consul.extend((d, source) for d in _parse_consul_hcl(text))
            return
        if suffix == ".conf" and re.search(r"\b(upstream\s+\S+\s*\{|proxy_pass|grpc_pass|fastcgi_pass)", text):
            self.nginx.append((rel, text))
            return
        if suffix == ".env":
            self.generic[rel] = dict(_parse_properties(text))

    def _read_consul(self, data: dict[str, Any], source: str) -> None:
        """Keep the well-formed service definitions of a Consul file; warn about (and skip) the others."""
        kept = []
        for svc in _consul_services(data):
            name = svc.get("name") or svc.get("Name")
            try:
                _check_consul_service(svc)
            except MalformedDocument as exc:
                self.findings.warnings.append(f"{source}: Consul service {name!r}: {exc}; service skipped")
                continue
            kept.append(svc)
        if kept:
            self.consul.append(({"services": kept}, source))

    def _read_yaml_doc(self, doc: Any, rel: str, source: str) -> None:
        if not isinstance(doc, dict):
            return
        kind = doc.get("kind")
        if isinstance(kind, str) and "apiVersion" in doc:
            if kind == "List":
                for item in _sequence(doc.get("items"), "items"):
                    self._read_yaml_doc(item, rel, source)
                return
            if kind not in READ_KINDS:  # other resources (Secrets, CRDs…) are not read: their shape is theirs
                return
            meta = _mapping(doc.get("metadata"), "metadata")
            spec = _mapping(doc.get("spec"), "spec")
            if kind in WORKLOAD_KINDS:
                self._read_k8s_workload(doc, source)
            elif kind == "Service":
                _mapping(spec.get("selector"), "spec.selector")
                _sequence(spec.get("ports"), "spec.ports")
                self.k8s_services.append((doc, source))
            elif kind == "ConfigMap":
                name = meta.get("name")
                data = _mapping(doc.get("data"), "data")
                if name:
                    self.configmaps[str(name)] = {str(k): str(v) for k, v in data.items()}
            elif kind == "NetworkPolicy":
                _check_policy(spec)
                self.policies.append((doc, source))
            return
        services = doc.get("services")
        if isinstance(services, dict) and any(isinstance(s, dict) and ("image" in s or "build" in s)
                                              for s in services.values()):
            self._read_compose(services, rel, source)
            return
        self.generic.setdefault(rel, doc)

    def _read_k8s_workload(self, doc: dict[str, Any], source: str) -> None:
        meta = _mapping(doc.get("metadata"), "metadata")
        spec = _mapping(doc.get("spec"), "spec")
        where = "spec"
        if doc.get("kind") == "CronJob":
            spec = _mapping(_mapping(spec.get("jobTemplate"), "spec.jobTemplate").get("spec"),
                            "spec.jobTemplate.spec")
            where = "spec.jobTemplate.spec"
        template = (_mapping(spec.get("template"), f"{where}.template") if doc.get("kind") != "Pod"
                    else {"metadata": meta, "spec": spec})
        pod = _mapping(template.get("spec"), f"{where}.template.spec") if doc.get("kind") != "Pod" else spec
        pod_where = "spec" if doc.get("kind") == "Pod" else f"{where}.template.spec"
        template_meta = _mapping(template.get("metadata"), f"{where}.template.metadata")
        labels = {str(k): str(v) for k, v in _mapping(template_meta.get("labels"), "labels").items()}
        env: list[tuple[str, str]] = []
        words: list[str] = []
        ports: list[int] = []
        image = None
        containers = (_sequence(pod.get("containers"), f"{pod_where}.containers")
                      + _sequence(pod.get("initContainers"), f"{pod_where}.initContainers"))
        for index, container in enumerate(containers):
            if not isinstance(container, dict):
                continue
            at = f"{pod_where}.containers[{index}]"
            image = image or (str(container["image"]) if container.get("image") is not None else None)
            for item in _sequence(container.get("env"), f"{at}.env"):
                if not isinstance(item, dict):
                    continue
                if "value" in item:
                    env.append((str(item.get("name")), str(item["value"])))
                value_from = _mapping(item.get("valueFrom"), f"{at}.env.valueFrom")
                ref = _mapping(value_from.get("configMapKeyRef"), f"{at}.env.valueFrom.configMapKeyRef")
                if ref.get("name") and ref.get("key"):
                    env.append((str(item.get("name")), f"configmap:{ref['name']}/{ref['key']}"))
            for item in _sequence(container.get("envFrom"), f"{at}.envFrom"):
                ref = _mapping(_mapping(item, f"{at}.envFrom[]").get("configMapRef"), f"{at}.envFrom.configMapRef")
                if ref.get("name"):
                    env.append(("*", f"configmap:{ref['name']}/*"))
            for key in ("command", "args"):
                value = container.get(key)
                words.extend([value] if isinstance(value, str) else (str(w) for w in _sequence(value, f"{at}.{key}")))
            for port in _sequence(container.get("ports"), f"{at}.ports"):
                if isinstance(port, dict) and isinstance(port.get("containerPort"), int):
                    ports.append(port["containerPort"])
        mounts = []
        for volume in _sequence(pod.get("volumes"), f"{pod_where}.volumes"):
            config_map = _mapping(_mapping(volume, f"{pod_where}.volumes[]").get("configMap"),
                                  f"{pod_where}.volumes.configMap")
            if config_map.get("name"):
                mounts.append(str(config_map["name"]))
        name = meta.get("name")
        if not name:
            self.findings.warnings.append(f"{source}: {doc.get('kind')} without metadata.name skipped")
            return
        self.workloads.append(_Workload(str(name), str(doc.get("kind")), labels, image, env, words, ports, mounts,
                                        [], source))

    def _read_compose(self, services: dict[str, Any], rel: str, source: str) -> None:
        folder = str(PurePosixPath(rel).parent)
        for name, svc in services.items():
            if not isinstance(svc, dict):
                continue
            try:
                self._read_compose_service(str(name), svc, folder, source)
            except MalformedDocument as exc:  # the other services of the file still count
                self.findings.warnings.append(f"{source}: service {name!r}: {exc}; service skipped")

    def _read_compose_service(self, name: str, svc: dict[str, Any], folder: str, source: str) -> None:
        env_raw = svc.get("environment") or {}
        if not isinstance(env_raw, (dict, list)):
            raise MalformedDocument(f"environment is {type(env_raw).__name__}, not a mapping or list")
        env = ([(str(k), str(v)) for k, v in env_raw.items()] if isinstance(env_raw, dict) else
               [tuple(str(e).split("=", 1)) if "=" in str(e) else (str(e), "") for e in env_raw])
        env = [(key, self._interpolate(value, f"{source}: service {name!r} environment {key}")) for key, value in env]
        words: list[str] = []
        for key in ("command", "entrypoint"):
            value = svc.get(key)
            words.extend(value.split() if isinstance(value, str) else [str(w) for w in _sequence(value, key)])
        deps = svc.get("depends_on") or []
        depends = list(deps) if isinstance(deps, (dict, list)) else []
        ports: list[int] = []
        for port in _sequence(svc.get("ports"), "ports"):
            target = port.get("target") if isinstance(port, dict) else str(port).split("/")[0].split(":")[-1]
            if str(target).isdigit():
                ports.append(int(target))
        ports.extend(int(p) for p in _sequence(svc.get("expose"), "expose") if str(p).isdigit())
        mounts = []
        for volume in _sequence(svc.get("volumes"), "volumes"):
            host = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if host and str(host).startswith((".", "/")):
                mounts.append((Path(folder) / str(host)).resolve().as_posix())
        aliases = [a for a in (svc.get("hostname"), svc.get("container_name")) if a]
        for link in _sequence(svc.get("links"), "links"):
            target, _, alias = str(link).partition(":")
            self.findings.catalog.add(target, source=source)
            if alias:
                self.findings.catalog.alias(alias, target)
        networks = svc.get("networks")
        if isinstance(networks, dict):
            for net_name, net in networks.items():
                aliases.extend(_sequence(_mapping(net, f"networks.{net_name}").get("aliases"),
                                         f"networks.{net_name}.aliases"))
        env_pairs = [(str(k), str(v)) for k, v in env]
        image = svc.get("image")
        self.workloads.append(_Workload(str(name), "compose", {}, None if image is None else str(image), env_pairs, words, ports,
                                        mounts, [str(d) for d in depends], source, [str(a) for a in aliases]))

    def _interpolate(self, value: str, where: str) -> str:
        """Compose's `${VAR:-default}` / `${VAR-default}` → the default (the variable is not known here); a
        bare `${VAR}` or `$VAR` in an address cannot be resolved and is reported, not guessed."""
        value = COMPOSE_DEFAULT.sub(lambda m: m.group(1), value)
        unresolved = COMPOSE_VARIABLE.findall(value)
        if unresolved and addresses_in(COMPOSE_VARIABLE.sub("unresolved", value)) != addresses_in(value):
            self.findings.warnings.append(f"{where}: ${{{unresolved[0][0] or unresolved[0][1]}}} is not set "
                                          "here (no default); the address it holds is unknown")
        return value

    # -- pass 1b: register services ----------------------------------------------------------------------
    def register(self) -> None:
        catalog = self.findings.catalog
        by_workload: dict[str, list[tuple[str, dict[str, Any], str]]] = defaultdict(list)
        for doc, source in self.k8s_services:
            meta = doc.get("metadata") or {}
            spec = doc.get("spec") or {}
            selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
            matched = [w for w in self.workloads if w.labels and selector
                       and all(w.labels.get(k) == v for k, v in selector.items())]
            for workload in matched:
                by_workload[workload.name].append((str(meta.get("name")), spec, source))
            if not matched:
                info = catalog.add(str(meta.get("name")), source=source)
                self._add_service_ports(info, spec, [])
        for workload in self.workloads:
            services = by_workload.get(workload.name, [])
            names = [s[0] for s in services]
            external = {s[0] for s in services if (s[1].get("type") or "ClusterIP") != "ClusterIP"}
            canonical = (workload.name if workload.name in names or not names else
                         sorted(names, key=lambda n: (n in external, n))[0])
            info = catalog.add(canonical, source=workload.source, image=workload.image)
            info.labels = info.labels or workload.labels
            for alias in [workload.name, *names, *workload.aliases]:
                catalog.alias(alias, canonical)
            for port in workload.ports:
                info.listen_ports.add(port)
            for _name, spec, _source in services:
                self._add_service_ports(info, spec, workload.ports)
            if not services and workload.kind == "compose":
                for port in workload.ports:
                    info.add_port(port, port)
        for data, source in self.consul:
            for svc in _consul_services(data):
                name = str(svc.get("name") or svc.get("Name") or "")
                if not name:
                    continue
                plain = name[4:] if name.startswith("srv-") and catalog.resolve(name[4:]) else name
                info = catalog.add(plain, source=source)
                catalog.alias(name, info.name)
                port = svc.get("port") or svc.get("Port")
                if isinstance(port, int):
                    info.add_port(port, port)
                for key in ("address", "Address"):
                    if isinstance(svc.get(key), str) and svc[key]:
                        info.sources.add(f"{source} address {svc[key]}")

    @staticmethod
    def _add_service_ports(info: Any, spec: dict[str, Any], container_ports: list[int]) -> None:
        for port in spec.get("ports") or []:
            if not isinstance(port, dict) or not isinstance(port.get("port"), int):
                continue
            target = port.get("targetPort", port["port"])
            if not isinstance(target, int):  # a named port: the container's (first) port
                target = container_ports[0] if container_ports else port["port"]
            info.add_port(port["port"], target)

    # -- pass 2: references ------------------------------------------------------------------------------
    def reference_workloads(self) -> None:
        catalog = self.findings.catalog
        for workload in self.workloads:
            caller = catalog.resolve(workload.name) or workload.name
            for env_name, value in workload.env:
                if value.startswith("configmap:"):
                    cm_name, _, key = value[len("configmap:"):].partition("/")
                    data = self.configmaps.get(cm_name)
                    if data is None:
                        self.findings.warnings.append(
                            f"{workload.source}: {workload.name} env {env_name} refers to missing ConfigMap {cm_name}")
                        continue
                    pairs = data.items() if key == "*" else [(key, data.get(key, ""))]
                    for cm_key, cm_value in pairs:
                        self._reference_value(caller, cm_key, cm_value,
                                              f"env {cm_key} from ConfigMap {cm_name}", workload.source)
                    continue
                self._reference_value(caller, env_name, value, f"env {env_name}={value}", workload.source)
            for word in workload.words:
                for host, port in addresses_in(word) or [(t, None) for t in TOKEN_RE.findall(word) if t.islower()]:
                    target = catalog.resolve(host)
                    if target and target != caller:
                        self._add(caller, host, port, "env", f"argument {word[:60]!r}", workload.source)
            for dep in workload.depends_on:
                self._add(caller, dep, None, "depends_on", "docker-compose depends_on", workload.source,
                          declared=True)

    def _reference_value(self, caller: str, env_name: str, value: str, detail: str, source: str) -> None:
        catalog = self.findings.catalog
        found = addresses_in(value)
        if not found and ADDRESS_ENV.search(env_name) and value and " " not in value.strip():
            found = [(value.strip(), None)]
        for host, port in found:
            if catalog.resolve(host):
                if catalog.resolve(host) != caller:
                    self._add(caller, host, port, "env", detail, source)
            elif ADDRESS_ENV.search(env_name) and INTERNAL_NAME.match(host.lower()) and not _is_ip(host):
                self.findings.dangling.append({"source": caller, "target": host, "port": port,
                                               "detail": detail, "file": source})

    def _add(self, caller: str, target: str, port: int | None, strength_key: str, detail: str,
             source: str, *, declared: bool = False) -> None:
        self.findings.references.append(Reference(caller, target, port, strength_key, f"{detail} ({source})",
                                                  extra={"file": source, "declared": declared}))
        if not declared:
            resolved = self.findings.catalog.resolve(target)
            if resolved:
                self.findings.addressed[caller].add(resolved)

    def reference_mounted_files(self) -> None:
        """Address books and other mounted files: edges only for the reader that names a key."""
        catalog = self.findings.catalog
        files: dict[str, MountedFile] = {}
        for rel, data in self.generic.items():
            files[rel] = MountedFile(rel, book_entries(data))
        for cm_name, data in self.configmaps.items():
            for file_key, content in data.items():
                parsed = _parse_embedded(file_key, content)
                if parsed is not None:
                    files[f"configmap:{cm_name}/{file_key}"] = MountedFile(f"configmap:{cm_name}/{file_key}",
                                                                          book_entries(parsed))
        for workload in self.workloads:
            caller = catalog.resolve(workload.name) or workload.name
            for mount in workload.mounts:
                mount_norm = str(PurePosixPath(mount))
                for rel, mounted in files.items():
                    if rel.startswith("configmap:"):
                        if rel.split("/", 1)[0] == f"configmap:{mount}":
                            mounted.readers.add(caller)
                    elif _under(rel, mount_norm):
                        mounted.readers.add(caller)
        for rel, mounted in files.items():
            if not mounted.entries or not mounted.readers:
                continue
            own_words: dict[str, set[str]] = {}
            for workload in self.workloads:
                caller = catalog.resolve(workload.name) or workload.name
                if caller in mounted.readers:
                    words = own_words.setdefault(caller, set())
                    for _n, value in workload.env:
                        words.update(t.lower() for t in TOKEN_RE.findall(value))
                    for word in workload.words:
                        words.update(t.lower() for t in TOKEN_RE.findall(word))
            shared = len(mounted.readers) > 1
            unattributed: list[str] = []
            for key, host, port in mounted.entries:
                target = catalog.resolve(host) or catalog.resolve(key.split(".")[0])
                top_key = key.split(".")[0].split("[")[0]
                readers = ([r for r in mounted.readers if top_key.lower() in own_words.get(r, set())
                            or host.lower() in own_words.get(r, set())] if shared else list(mounted.readers))
                if target is None:
                    if INTERNAL_NAME.match(host.lower()) and not _is_ip(host):
                        self.findings.dangling.append({
                            "source": ",".join(sorted(readers)) if readers else None, "target": host, "port": port,
                            "detail": f"address book {rel} key {key!r}"
                                      + ("" if readers else f" (shared by {len(mounted.readers)} services, "
                                                             "no reader names it)"),
                            "file": rel})
                    continue
                for reader in mounted.readers:
                    if reader != target:
                        self.findings.addressed[reader].add(target)
                for reader in readers:
                    if reader != target:
                        self._add(reader, host, port, "env", f"address book {rel} key {key!r}", rel)
                if not readers:
                    unattributed.append(key)
            if shared and unattributed:
                self.findings.warnings.append(
                    f"shared address book {rel} is mounted by {len(mounted.readers)} services; {len(unattributed)} "
                    f"key(s) name no reader in that reader's own configuration and are not edges: "
                    f"{', '.join(sorted(unattributed)[:8])}{'…' if len(unattributed) > 8 else ''}")

    def reference_nginx(self) -> None:
        catalog = self.findings.catalog
        for rel, text in self.nginx:
            readers = {catalog.resolve(w.name) or w.name for w in self.workloads
                       if any(_under(rel, str(PurePosixPath(m))) for m in w.mounts)}
            if not readers:
                parents = PurePosixPath(rel).parents
                guess = next((catalog.resolve(p.name) for p in list(parents)[:3] if catalog.resolve(p.name)), None)
                readers = {guess} if guess else set()
            if not readers:
                self.findings.warnings.append(f"{rel}: nginx configuration mounted by no known service; ignored")
                continue
            clean = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
            upstreams: dict[str, list[tuple[str, int | None]]] = {}
            for match in re.finditer(r"upstream\s+([\w.-]+)\s*\{([^}]*)\}", clean):
                upstreams[match.group(1)] = [
                    (m.group(1), int(m.group(2)) if m.group(2) else None)
                    for m in re.finditer(r"\bserver\s+([A-Za-z0-9_.-]+)(?::(\d+))?", match.group(2))]
            for match in re.finditer(r"\b(proxy_pass|grpc_pass|fastcgi_pass|uwsgi_pass)\s+([^;\s]+)", clean):
                target = re.sub(r"^[a-z]+://", "", match.group(2)).split("/")[0]
                host, _, port = target.partition(":")
                servers = upstreams.get(host, [(host, int(port) if port.isdigit() else None)])
                for server, server_port in servers:
                    for reader in readers:
                        if catalog.resolve(server):
                            self._add(reader, server, server_port, "proxy",
                                      f"nginx {match.group(1)} {match.group(2)}", rel)
                        elif not _is_ip(server) and "$" not in server:
                            self.findings.dangling.append({"source": reader, "target": server, "port": server_port,
                                                           "detail": f"nginx {match.group(1)}", "file": rel})

    def reference_spring(self) -> None:
        catalog = self.findings.catalog
        for rel, path, data in self.spring:
            name = data.get("spring.application.name")
            readers = {catalog.resolve(w.name) or w.name for w in self.workloads
                       if any(_under(rel, str(PurePosixPath(m))) for m in w.mounts)}
            if isinstance(name, str) and name:
                readers.add(catalog.add(name, source=str(path)).name)
            if not readers:
                guess = catalog.resolve(path.parent.name) or catalog.resolve(path.parent.parent.name)
                readers = {guess} if guess else set()
            if not readers:
                self.findings.warnings.append(f"{path}: Spring configuration with no spring.application.name and "
                                              "no known reader; ignored")
                continue
            for key, value in data.items():
                if not isinstance(value, str):
                    continue
                for host, port in addresses_in(value):
                    for reader in readers:
                        if catalog.resolve(host) and catalog.resolve(host) != reader:
                            self._add(reader, host, port, "proxy", f"spring {key}={value}", str(path))
                        elif not catalog.resolve(host) and INTERNAL_NAME.match(host.lower()) and not _is_ip(host) \
                                and "." not in host:
                            self.findings.dangling.append({"source": reader, "target": host, "port": port,
                                                           "detail": f"spring {key}", "file": str(path)})

    def reference_consul(self) -> None:
        catalog = self.findings.catalog
        for data, source in self.consul:
            for svc in _consul_services(data):
                name = catalog.resolve(str(svc.get("name") or svc.get("Name") or ""))
                if not name:
                    continue
                proxy = (((svc.get("connect") or {}).get("sidecar_service") or {}).get("proxy")) or {}
                for upstream in proxy.get("upstreams") or []:
                    target = upstream.get("destination_name")
                    if not target:
                        continue
                    if catalog.resolve(target):
                        self._add(name, target, upstream.get("local_bind_port"), "proxy",
                                  f"consul upstream {target}", source)
                    else:
                        self.findings.dangling.append({"source": name, "target": target, "port": None,
                                                       "detail": "consul upstream", "file": source})

    def reference_policies(self) -> None:
        catalog = self.findings.catalog
        for doc, source in self.policies:
            spec = doc.get("spec") or {}
            selected = catalog.by_label(((spec.get("podSelector") or {}).get("matchLabels")) or {})
            for rule in spec.get("ingress") or []:
                ports = [p.get("port") for p in (rule or {}).get("ports") or [] if isinstance(p, dict)]
                for peer in (rule or {}).get("from") or []:
                    labels = (((peer or {}).get("podSelector") or {}).get("matchLabels")) or {}
                    for caller in catalog.by_label(labels):
                        for callee in selected:
                            if caller != callee:
                                port = ports[0] if ports and isinstance(ports[0], int) else None
                                self._add(caller, callee, port, "network_policy",
                                          f"NetworkPolicy {(doc.get('metadata') or {}).get('name')} ingress "
                                          f"allows {caller}", source, declared=True)


def _check_consul_service(svc: dict[str, Any]) -> None:
    if not isinstance(svc.get("name") or svc.get("Name"), str):
        raise MalformedDocument("name is not text")
    connect = _mapping(svc.get("connect"), "connect")
    sidecar = _mapping(connect.get("sidecar_service"), "connect.sidecar_service")
    proxy = _mapping(sidecar.get("proxy"), "connect.sidecar_service.proxy")
    for index, upstream in enumerate(_sequence(proxy.get("upstreams"), "connect.sidecar_service.proxy.upstreams")):
        at = f"connect.sidecar_service.proxy.upstreams[{index}]"
        if not isinstance(upstream, dict):
            raise MalformedDocument(f"{at} is {type(upstream).__name__}, not a mapping")
        target = upstream.get("destination_name")
        if target is not None and not isinstance(target, str):
            raise MalformedDocument(f"{at}.destination_name is {type(target).__name__}, not text")


def _check_policy(spec: dict[str, Any]) -> None:
    """Refuse a NetworkPolicy whose selectors or rules are not shaped as Kubernetes defines them."""
    _mapping(_mapping(spec.get("podSelector"), "spec.podSelector").get("matchLabels"), "spec.podSelector.matchLabels")
    for index, rule in enumerate(_sequence(spec.get("ingress"), "spec.ingress")):
        at = f"spec.ingress[{index}]"
        rule = _mapping(rule, at)
        _sequence(rule.get("ports"), f"{at}.ports")
        for peer_index, peer in enumerate(_sequence(rule.get("from"), f"{at}.from")):
            selector = _mapping(_mapping(peer, f"{at}.from[{peer_index}]").get("podSelector"),
                                f"{at}.from[{peer_index}].podSelector")
            _mapping(selector.get("matchLabels"), f"{at}.from[{peer_index}].podSelector.matchLabels")


def _under(path: str, mount: str) -> bool:
    mount = mount.rstrip("/")
    return path == mount or path.startswith(mount + "/")


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", host)) or ":" in host


def _merge_docs(docs: list[Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for doc in docs:
        if isinstance(doc, dict):
            flat.update(dict(_flatten(doc)))
    return flat


def _parse_properties(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = _split_property(line)
        if sep:
            out[key.removeprefix("export ").strip()] = value.strip().strip("'\"")
    return out


def _split_property(line: str) -> tuple[str, str, str]:
    match = re.match(r"([^=:\s]+)\s*([=:])\s*(.*)", line)
    return (match.group(1), match.group(2), match.group(3)) if match else (line, "", "")


def _parse_embedded(file_key: str, content: str) -> Any:
    lower = file_key.lower()
    try:
        if lower.endswith(".json"):
            parsed = json.loads(content)
        elif lower.endswith((".yaml", ".yml")):
            parsed = yaml.safe_load(content)
        elif lower.endswith((".properties", ".env")):
            return _parse_properties(content)
        else:
            return None
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError):
        return None
    return None if _too_deep(parsed) else parsed


def _looks_consul(data: dict[str, Any]) -> bool:
    services = _consul_services(data)
    return bool(services) and all(isinstance(s, dict) and (s.get("name") or s.get("Name")) for s in services)


def _consul_services(data: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(data.get("service"), dict):
        return [data["service"]]
    if isinstance(data.get("services"), list):
        return [s for s in data["services"] if isinstance(s, dict)]
    return []


def _parse_consul_hcl(text: str) -> list[dict[str, Any]]:
    """Minimal HCL: `service { name = "x" port = N ... upstreams = [{ destination_name = "y" }] }`."""
    out: list[dict[str, Any]] = []
    for block in re.split(r"\bservice\s*\{", text)[1:]:
        name = re.search(r'\bname\s*=\s*"([^"]+)"', block)
        port = re.search(r"\bport\s*=\s*(\d+)", block)
        ups = re.findall(r'destination_name\s*=\s*"([^"]+)"', block)
        if name:
            out.append({"name": name.group(1), "port": int(port.group(1)) if port else None,
                        "connect": {"sidecar_service": {"proxy": {"upstreams": [
                            {"destination_name": u} for u in ups]}}}})
    return out


def extract_configs(roots: Iterable[str | Path]) -> ConfigFindings:
    """Read every configuration file under `roots` and return the catalog, references and findings."""
    extraction = _Extraction()
    for root, path in iter_config_files(roots, extraction.findings.warnings):
        extraction.read(root, path)
    extraction.register()
    extraction.findings.catalog.settled = True  # references name services from here on: no more renames
    extraction.reference_workloads()
    extraction.reference_mounted_files()
    extraction.reference_nginx()
    extraction.reference_spring()
    extraction.reference_consul()
    extraction.reference_policies()
    findings = extraction.findings
    for info in findings.catalog.services.values():
        if info.kind == "service":
            info.kind = infer_kind(info.name, info.image)
    log.info("configs: %d files, %d services, %d references", findings.files, len(findings.catalog.services),
             len(findings.references))
    return findings
