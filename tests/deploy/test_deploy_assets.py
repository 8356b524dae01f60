"""The deployment assets agree with the gateway they deploy.

Every configuration under deploy/ and config/ is validated by the real settings loader,
with the environment the deployment gives the container; every metric an alert or a
dashboard panel uses must be exported by ``GatewayMetrics``; the image runs ``gateway
serve`` as a non-root user; Kubernetes probes hit the admin listener's /healthz and /readyz.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway import settings as settings_module
from gateway.cli import build_parser, cmd_demo_upstream, cmd_serve
from gateway.observability.metrics import GatewayMetrics
from gateway.settings import ConfigError, Settings, load_settings
from gateway.units import parse_address, parse_duration
from tests.deploy.assets import (
    DEPLOY,
    ROOT,
    Dockerfile,
    Kustomization,
    Selector,
    dockerignore_patterns,
    dockerignored,
    grafana_variable_query,
    kustomizations,
    load_yaml_documents,
    resolve_port,
    selectors,
    selects,
    substitute_grafana_variables,
)

DOCKERFILE = Dockerfile.read(ROOT / "Dockerfile")
IMAGE = "registry.example.com/platform/gateway"  # the image name the Kubernetes examples use
ALERT_RULES = DEPLOY / "prometheus" / "gateway-alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gateway.json"
COMPOSE = DEPLOY / "compose" / "docker-compose.yaml"
# Labels Prometheus attaches to every scraped series (the scrape configs here add the rest).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "app", "environment"})
# Series Prometheus itself generates for every target.
PROMETHEUS_SERIES = {"up": frozenset[str]()}
CORE_METRICS = (
    "gateway_requests_total",
    "gateway_request_duration_seconds",
    "gateway_upstream_duration_seconds",
    "gateway_requests_in_flight",
    "gateway_spoofed_headers_total",
    "gateway_upstream_errors_total",
)


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), *(ROOT / "config").glob("*.yaml")])


def gateway_config_files() -> list[Path]:
    """YAML files that are gateway configurations: config/*.yaml and deploy/**/gateway.yaml."""
    return sorted([*(ROOT / "config").glob("*.yaml"), *DEPLOY.rglob("gateway.yaml")])


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def load_with(
    config: Path, environ: Mapping[str, str], secret_files: set[str], tmp_path: Path
) -> tuple[Settings, dict[str, str]]:
    """Validate ``config`` with the real loader under ``environ``.

    The secret files a deployment mounts (admin tokens) do not exist here: each path in
    ``secret_files`` is replaced by a real temporary file so validation runs in full; the
    caller checks separately that the original path is mounted from a Secret.
    """
    env = dict(environ)
    for name, value in env.items():
        if value in secret_files:
            stand_in = tmp_path / Path(value).name
            stand_in.write_text("stand-in:sha256:" + "0" * 64 + "\n")  # a well-formed admin tokens file
            env[name] = str(stand_in)
    env.pop("GATEWAY_CONFIG", None)
    try:
        return load_settings(str(config), environ=env), env
    except ConfigError as exc:
        pytest.fail(f"{relative(config)} with {sorted(environ)}: invalid:\n" + "\n".join(exc.problems))


# -- YAML and gateway configurations -------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=relative)
def test_every_yaml_file_parses(path: Path) -> None:
    documents = load_yaml_documents(path)
    assert documents, f"{relative(path)} holds no YAML document"
    assert all(isinstance(doc, dict) for doc in documents), f"{relative(path)}: a document is not a mapping"


def test_gateway_configs_are_found() -> None:
    # The examples this repository ships: if one moves, the validation below must follow it.
    found = {relative(p) for p in gateway_config_files()}
    assert {
        "config/gateway.yaml",
        "deploy/compose/gateway.yaml",
        "deploy/kubernetes/sidecar/gateway.yaml",
        "deploy/kubernetes/ingress/gateway.yaml",
    } <= found


@pytest.mark.parametrize("path", gateway_config_files(), ids=relative)
def test_gateway_config_validates_on_its_own(path: Path) -> None:
    # As `gateway check-config --config FILE` would, with no environment at all.
    try:
        settings = load_settings(str(path), environ={})
    except ConfigError as exc:
        pytest.fail(f"{relative(path)}:\n" + "\n".join(exc.problems))
    assert settings.routes, f"{relative(path)} defines no route"


# -- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_runs_gateway_serve() -> None:
    command = DOCKERFILE.command()
    assert command[:2] == ["gateway", "serve"], command
    args = build_parser().parse_args(command[1:])
    assert args.func is cmd_serve


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    user = DOCKERFILE.last("USER")
    assert user is not None, "the image runs as root: no USER"
    uid, _, gid = user.partition(":")
    # Kubernetes' runAsNonRoot can only verify a numeric user.
    assert uid.isdigit() and int(uid) != 0, f"USER {user!r} is not a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) != 0), f"USER {user!r} has a root or named group"
    last_user = max(i for i, (kw, _) in enumerate(DOCKERFILE.instructions) if kw == "USER")
    later = [kw for kw, _ in DOCKERFILE.instructions[last_user:] if kw == "RUN"]
    assert not later, "RUN after USER: build steps should run before dropping privileges"


def test_dockerfile_environment_and_baked_config_are_a_valid_configuration(tmp_path: Path) -> None:
    env = DOCKERFILE.env()
    assert env.get("GATEWAY_CONFIG") == "/etc/gateway/gateway.yaml"
    copied = [sources for sources, dest in DOCKERFILE.copies() if dest == env["GATEWAY_CONFIG"]]
    assert copied, "no COPY puts a configuration at $GATEWAY_CONFIG"
    settings, _ = load_with(ROOT / copied[0][0], env, set(), tmp_path)
    assert settings.listen.host in ("0.0.0.0", "::"), "in a container the data listener must bind every interface"
    assert settings.store == "sqlite:////var/lib/gateway/gateway.db"
    store_dir = str(Path(urlsplit(settings.store).path[1:]).parent)
    volumes = [json.loads(v) if v.startswith("[") else v.split() for v in DOCKERFILE.all("VOLUME")]
    assert any(store_dir in v for v in volumes), f"the store directory {store_dir} is not a VOLUME"
    assert any(store_dir in run for run in DOCKERFILE.all("RUN")), f"{store_dir} is not created for the user"
    exposed = {int(p.split("/")[0]) for args in DOCKERFILE.all("EXPOSE") for p in args.split()}
    assert {settings.listen.port, settings.admin_listen.port} <= exposed
    assert DOCKERFILE.last("STOPSIGNAL") == "SIGTERM"


def test_dockerfile_healthcheck_probes_the_admin_healthz(tmp_path: Path) -> None:
    env = DOCKERFILE.env()
    copied = next(sources for sources, dest in DOCKERFILE.copies() if dest == env["GATEWAY_CONFIG"])
    settings, _ = load_with(ROOT / copied[0], env, set(), tmp_path)
    healthcheck = DOCKERFILE.last("HEALTHCHECK")
    assert healthcheck is not None
    urls = re.findall(r"https?://[^'\"\s]+", healthcheck)
    assert urls == [f"http://127.0.0.1:{settings.admin_listen.port}/healthz"], healthcheck
    # Run inside the container: the admin listener must answer on loopback.
    assert settings.admin_listen.is_loopback or settings.admin_listen.host in ("0.0.0.0", "::")


def test_dockerfile_copies_exist_and_are_in_the_build_context() -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    for sources, _ in DOCKERFILE.copies():
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    # pyproject.toml names README.md as the package readme: `pip install .` needs it.
    assert "README.md" in {s for sources, _ in DOCKERFILE.copies() for s in sources}


@pytest.mark.parametrize("path", [".venv", "var", ".git", ".mypy_cache", "gateway/__pycache__", "x.egg-info"])
def test_dockerignore_keeps_local_state_out_of_the_image(path: str) -> None:
    assert dockerignored(path, dockerignore_patterns(ROOT / ".dockerignore"))


def test_dockerignore_matcher_is_not_vacuous() -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    assert not dockerignored("gateway/proxy.py", patterns)
    assert dockerignored("a/b", ["a"]) and not dockerignored("a/b", ["a", "!a/b"])


# -- Kubernetes ------------------------------------------------------------------------------


def gateway_containers(kustomization: Kustomization) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) for every container running `gateway serve`."""
    found = []
    for workload in kustomization.of_kind("Deployment"):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            if container["image"].startswith(IMAGE) and container.get("args", [])[:1] == ["serve"]:
                found.append((pod, container))
    return found


def container_environ(container: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """The image's ENV overlaid with the container's env; returns it and the Secret-sourced names.

    Values from Secrets cannot be known here: they become a placeholder (kubelet-style
    ``$(VAR)`` references to them too).
    """
    env = DOCKERFILE.env()
    from_secrets: set[str] = set()
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            assert "secretKeyRef" in entry["valueFrom"], entry
            from_secrets.add(entry["name"])
            env[entry["name"]] = "secret-from-kubernetes"
            continue
        value = str(entry.get("value", ""))
        env[entry["name"]] = re.sub(r"\$\(([A-Za-z0-9_]+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
    return env, from_secrets


def mounted_file(pod: Mapping[str, Any], container: Mapping[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The pod volume that provides ``path`` in the container, and the path inside that volume."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            return volume, path[len(prefix) :]
    raise AssertionError(f"{path} is not on any volume mounted in container {container['name']!r}")


def deployed_settings(
    kustomization: Kustomization, pod: dict[str, Any], container: dict[str, Any], tmp_path: Path
) -> tuple[Settings, dict[str, str]]:
    env, _ = container_environ(container)
    volume, key = mounted_file(pod, container, env["GATEWAY_CONFIG"])
    assert "configMap" in volume, f"GATEWAY_CONFIG is not on a ConfigMap volume: {volume}"
    config_file = kustomization.config_maps[volume["configMap"]["name"]][key]
    secret_paths = set()
    tokens_file = env.get("GATEWAY_ADMIN_TOKENS_FILE")
    if tokens_file:
        secret_volume, inside = mounted_file(pod, container, tokens_file)
        assert "secret" in secret_volume, f"the admin tokens file {tokens_file} is not mounted from a Secret"
        items = secret_volume["secret"].get("items")
        assert items is None or inside in {item["path"] for item in items}, f"{tokens_file} is not a Secret item"
        secret_paths.add(tokens_file)
    return load_with(config_file, env, secret_paths, tmp_path)


@pytest.fixture(params=kustomizations(), ids=lambda p: p.name)
def kustomization(request: pytest.FixtureRequest) -> Kustomization:
    return Kustomization.read(request.param)


def test_kubernetes_examples_exist() -> None:
    assert {p.name for p in kustomizations()} >= {"sidecar", "ingress"}


def test_kubernetes_gateway_configuration_validates(kustomization: Kustomization, tmp_path: Path) -> None:
    containers = gateway_containers(kustomization)
    assert containers, f"{kustomization.directory.name}: no container runs `gateway serve`"
    for pod, container in containers:
        settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert settings.listen.port in ports.values()
        assert settings.admin_listen.port in ports.values()
        if not settings.admin_listen.is_loopback:
            # The admin listener on the pod IP needs admin tokens (and the gateway will refuse it without).
            assert settings.admin.tokens_file is not None


def test_kubernetes_probes_hit_admin_healthz_and_readyz(kustomization: Kustomization, tmp_path: Path) -> None:
    for pod, container in gateway_containers(kustomization):
        settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
        expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        for probe_name, path in expected.items():
            probe = container.get(probe_name)
            assert probe is not None, f"{container['name']}: no {probe_name}"
            assert probe["httpGet"]["path"] == path
            assert resolve_port(container, probe["httpGet"]["port"]) == settings.admin_listen.port
        if "startupProbe" in container:
            assert resolve_port(container, container["startupProbe"]["httpGet"]["port"]) == settings.admin_listen.port
        # The kubelet probes the pod IP: a loopback admin listener would fail every probe.
        assert not settings.admin_listen.is_loopback


def test_kubernetes_shutdown_leaves_time_to_drain(kustomization: Kustomization, tmp_path: Path) -> None:
    for pod, container in gateway_containers(kustomization):
        settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep", "a preStop sleep lets endpoint removal propagate before SIGTERM"
        delay = parse_duration(pre_stop[1])
        grace = pod["terminationGracePeriodSeconds"]
        assert grace > delay + settings.drain_timeout, (grace, delay, settings.drain_timeout)
        for other in pod["containers"]:
            if other is container:
                continue
            # Containers behind the gateway keep serving until it has drained.
            other_delay = parse_duration(other["lifecycle"]["preStop"]["exec"]["command"][1])
            assert other_delay >= delay + settings.drain_timeout, other["name"]
            assert grace > other_delay


def test_kubernetes_pods_are_locked_down(kustomization: Kustomization) -> None:
    for kind in ("Deployment", "StatefulSet"):
        for workload in kustomization.of_kind(kind):
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                name = f"{workload['metadata']['name']}/{container['name']}"
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True, name
                assert security["allowPrivilegeEscalation"] is False, name
                assert "ALL" in security["capabilities"]["drop"], name
                resources = container["resources"]
                assert {"cpu", "memory"} <= set(resources["requests"]), name
                assert "memory" in resources["limits"], name


def test_kubernetes_writable_paths_are_volumes(kustomization: Kustomization, tmp_path: Path) -> None:
    # readOnlyRootFilesystem: the embedded store's directory must be a mounted volume.
    for pod, container in gateway_containers(kustomization):
        settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
        if settings.store.startswith("sqlite:"):
            db = urlsplit(settings.store).path[1:]
            assert db.startswith("/"), f"relative sqlite path under a read-only root: {settings.store}"
            volume, _ = mounted_file(pod, container, db)
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts


def test_kubernetes_other_containers_run_real_commands(kustomization: Kustomization) -> None:
    for workload in kustomization.of_kind("Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith(IMAGE) and container["args"][0] != "serve":
                args = build_parser().parse_args(container["args"])
                assert args.func is cmd_demo_upstream
                assert parse_address(args.listen).is_loopback, "an app behind a sidecar listens on loopback only"


def test_kubernetes_service_targets_the_gateway_listener(kustomization: Kustomization, tmp_path: Path) -> None:
    for pod, container in gateway_containers(kustomization):
        settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
        pod_labels = next(
            d["spec"]["template"]["metadata"]["labels"]
            for d in kustomization.of_kind("Deployment")
            if d["spec"]["template"]["spec"] is pod
        )
        targeted: set[int] = set()
        for service in kustomization.of_kind("Service"):
            if selects(service["spec"]["selector"], pod_labels):
                for port in service["spec"]["ports"]:
                    target = resolve_port(container, port["targetPort"])
                    assert target in (settings.listen.port, settings.admin_listen.port), service["metadata"]
                    targeted.add(target)
        assert settings.listen.port in targeted, "no Service sends traffic to the gateway listener"
        # Nothing routes around the gateway to the application's port.
        app_ports = {p["containerPort"] for c in pod["containers"] if c is not container for p in c.get("ports", [])}
        assert not (targeted & app_ports)


def test_kubernetes_metrics_are_scraped_from_the_admin_port(kustomization: Kustomization, tmp_path: Path) -> None:
    for pod, container in gateway_containers(kustomization):
        settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
        template = next(
            d["spec"]["template"] for d in kustomization.of_kind("Deployment") if d["spec"]["template"]["spec"] is pod
        )
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == settings.admin_listen.port
        assert annotations["prometheus.io/path"] == "/metrics"
    monitors = list(kustomization.of_kind("ServiceMonitor"))
    assert monitors, "no ServiceMonitor"
    for monitor in monitors:
        services = [
            s
            for s in kustomization.of_kind("Service")
            if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert len(services) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(services)} Services"
        service = services[0]
        # The alert rules select job="gateway": the job label comes from the Service label jobLabel names.
        assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "gateway"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["path"] == "/metrics"
            port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
            for pod, container in gateway_containers(kustomization):
                settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
                assert resolve_port(container, port["targetPort"]) == settings.admin_listen.port


def test_ingress_replicas_share_a_redis_store(tmp_path: Path) -> None:
    kustomization = Kustomization.read(DEPLOY / "kubernetes" / "ingress")
    (pod, container), *_ = gateway_containers(kustomization)
    settings, _ = deployed_settings(kustomization, pod, container, tmp_path)
    assert urlsplit(settings.store).scheme in ("redis", "rediss", "redis+sentinel")
    deployment = next(kustomization.of_kind("Deployment"))
    assert deployment["spec"]["replicas"] > 1
    host = urlsplit(settings.store).hostname
    assert host in {s["metadata"]["name"] for s in kustomization.of_kind("Service")}, host
    assert len(settings.routes) > 1 and len({urlsplit(r.upstream).hostname for r in settings.routes}) > 1


# -- docker compose --------------------------------------------------------------------------


def test_compose_runs_gateway_redis_and_demo_upstream(tmp_path: Path) -> None:
    compose = load_yaml_documents(COMPOSE)[0]
    services = compose["services"]
    gateway = services["gateway"]
    env = {**DOCKERFILE.env(), **{k: str(v) for k, v in gateway["environment"].items()}}
    mounts = {m.split(":")[1]: m.split(":")[0] for m in gateway["volumes"]}
    config = COMPOSE.parent / mounts[env["GATEWAY_CONFIG"]]
    settings, _ = load_with(config, env, set(), tmp_path)
    assert build_parser().parse_args(gateway["command"]).func is cmd_serve
    assert urlsplit(settings.store).scheme == "redis" and urlsplit(settings.store).hostname in services
    upstream_args = build_parser().parse_args(services["upstream"]["command"])
    assert upstream_args.func is cmd_demo_upstream
    listen = parse_address(upstream_args.listen)
    for route in settings.routes:
        parts = urlsplit(route.upstream)
        assert (parts.hostname, parts.port) == ("upstream", listen.port), route.name
    assert parse_duration(gateway["stop_grace_period"]) > settings.drain_timeout
    assert "redis" in services


def test_compose_mounts_exist() -> None:
    compose = load_yaml_documents(COMPOSE)[0]
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"


# -- metrics: alert rules and the dashboard use only what the gateway exports ----------------


def exported_metrics() -> dict[str, frozenset[str] | None]:
    """Sample names the gateway exposes -> their label names (None: not observed, labels unknown)."""
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.observe_request("r", "GET", 200, 0.01, 0.005)
    metrics.spoofed_headers.labels("X-User-Id").inc()
    metrics.upstream_errors.labels("r", "upstream.timeout").inc()
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
        "stateset": ("",),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "unknown": ("",),
    }
    names: dict[str, frozenset[str] | None] = {}
    for family in metrics.registry.collect():
        for suffix in suffixes[family.type]:
            names.setdefault(family.name + suffix, None)
        for sample in family.samples:
            names[sample.name] = frozenset(sample.labels)
    return names


EXPORTED = exported_metrics()


def unknown_uses(found: list[Selector]) -> list[str]:
    problems = []
    for selector in found:
        known = EXPORTED.get(selector.metric, PROMETHEUS_SERIES.get(selector.metric))
        if selector.metric not in EXPORTED and selector.metric not in PROMETHEUS_SERIES:
            problems.append(f"{selector.metric}: not exported by the gateway")
        elif known is not None:
            extra = selector.labels - known - TARGET_LABELS
            if extra:
                problems.append(f"{selector.metric}: no label {sorted(extra)}")
    return problems


def alert_expressions() -> list[tuple[str, str]]:
    rules = load_yaml_documents(ALERT_RULES)[0]
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rules["groups"]
        for rule in group.get("rules") or []
    ]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows carry their panels
    return out


def dashboard_expressions() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']}/{target['refId']}", target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]


def test_exported_metrics_include_the_core_set() -> None:
    assert EXPORTED["gateway_requests_total"] == frozenset({"route", "method", "code"})
    assert EXPORTED["gateway_request_duration_seconds_bucket"] == frozenset({"route", "le"})
    assert "gateway_requests_in_flight" in EXPORTED


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'sum by (route) (rate(gateway_requests_total{job="g", code=~"5.."}[5m]))',
            [Selector("gateway_requests_total", frozenset({"job", "code"}))],
        ),
        (
            "histogram_quantile(0.99, sum by (route, le) "
            "(rate(gateway_request_duration_seconds_bucket[$__rate_interval])))",
            [Selector("gateway_request_duration_seconds_bucket", frozenset())],
        ),
        (
            "a / on (route) group_left sum by (route) (b) and c offset 5m > 3 * d",
            [Selector(m, frozenset()) for m in "abcd"],
        ),
        ('up{job="$job"} == 0', [Selector("up", frozenset({"job"}))]),
    ],
)
def test_promql_selector_extraction(expr: str, expected: list[Selector]) -> None:
    assert selectors(expr) == expected


def test_unknown_metric_names_and_labels_are_reported() -> None:
    # The checks below must be able to fail.
    assert unknown_uses(selectors("rate(gateway_request_total[5m])")) == [
        "gateway_request_total: not exported by the gateway"
    ]
    assert unknown_uses(selectors('gateway_requests_in_flight{route="x"}')) == [
        "gateway_requests_in_flight: no label ['route']"
    ]
    assert unknown_uses(selectors('gateway_requests_total{route="x", code="200", job="gateway"}')) == []


def test_alert_rules_use_only_exported_metrics() -> None:
    expressions = alert_expressions()
    assert len(expressions) >= 5
    problems = [f"{name}: {p}" for name, expr in expressions for p in unknown_uses(selectors(expr))]
    assert not problems, "\n".join(problems)


def test_alert_rules_cover_the_operational_signals() -> None:
    used = {s.metric for _, expr in alert_expressions() for s in selectors(expr)}
    assert {
        "up",
        "gateway_requests_total",
        "gateway_upstream_errors_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_spoofed_headers_total",
    } <= used
    for name, expr in alert_expressions():
        for selector in selectors(expr):
            assert "job" in selector.labels, f"{name}: {selector.metric} does not select the job"


def test_dashboard_uses_only_exported_metrics() -> None:
    expressions = dashboard_expressions()
    problems = [f"{name}: {p}" for name, expr in expressions for p in unknown_uses(selectors(expr))]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        found, label = grafana_variable_query(query)
        problems += [f"${variable['name']}: {p}" for p in unknown_uses(found)]
        for selector in found:
            known = EXPORTED.get(selector.metric)
            if label is not None and known is not None and label not in known | TARGET_LABELS:
                problems.append(f"${variable['name']}: {selector.metric} has no label {label!r}")
    assert not problems, "\n".join(problems)


def test_dashboard_shows_every_core_metric() -> None:
    used = {s.metric for _, expr in dashboard_expressions() for s in selectors(expr)}
    for metric in CORE_METRICS:
        assert any(name == metric or name.startswith(metric + "_") for name in used), f"no panel shows {metric}"


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    panels = dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"] for v in board["templating"]["list"]}
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\$(?:\{)?([A-Za-z_][A-Za-z0-9_]*)", target["expr"]):
                assert name.startswith("__") or name in variables, f"{panel['title']}: undefined ${name}"


# -- promtool, when installed ----------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(DEPLOY / "prometheus" / "tests" / "gateway-alerts.test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": substitute_grafana_variables(expr)}
                    for index, (_, expr) in enumerate(dashboard_expressions())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# -- docs ------------------------------------------------------------------------------------


def test_configuration_doc_covers_every_key_and_environment_variable() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    classes = [
        settings_module.Settings,
        settings_module.RouteSettings,
        settings_module.Timeouts,
        settings_module.UpstreamPoolSettings,
        settings_module.LogSettings,
        settings_module.AdminSettings,
    ]
    keys = {f.name for cls in classes for f in dataclasses.fields(cls)} - {"source"}
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert not missing, f"docs/configuration.md does not document: {missing}"
    source = Path(settings_module.__file__).read_text(encoding="utf-8")
    variables = set(re.findall(r'"(GATEWAY_[A-Z_]+)"', source))
    assert "GATEWAY_CONFIG" in variables
    missing = sorted(v for v in variables if f"`{v}`" not in doc)
    assert not missing, f"docs/configuration.md does not document: {missing}"
