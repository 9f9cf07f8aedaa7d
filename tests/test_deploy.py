"""The Kubernetes manifests (deploy/k8s): each overlay renders with kustomize, every object
validates against the Kubernetes schemas, and the wiring agrees with the code: every
environment variable is a setting evorec reads, every container listens and is probed where
its settings say, every address a service dials is a Service that selects the pods serving
it, and the network policies allow exactly the edges of the data flow.

Needs kubectl and kubernetes-validate (`make deploy-tools`); without them the tests skip,
except under CI, where they fail.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from evorec.platform.config import ENV_PREFIX, Settings, load_settings
from evorec.platform.registry import SERVICES

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["embedded", "gpu"]
KUBERNETES_VERSION = "1.33.0"
EVOREC_IMAGES = ("evorec-service", "evorec-model")

# The data flow (../shared/DESIGN.md): who calls whom, on which port.
CALLERS, PROMETHEUS = "callers", "prometheus"
GRPC_EDGES = {
    (CALLERS, "ranking", 50054),
    (CALLERS, "interest", 50053),
    (CALLERS, "embedding", 50052),
    ("ranking", "interest", 50053),
    ("ranking", "embedding", 50052),
    ("ranking", "tf-serving", 8500),
    ("embedding", "preprocess", 50051),
    ("interest", "embedding", 50052),
    ("retrain", "interest", 50053),
    ("retrain", "embedding", 50052),
}
METRICS_EDGES = {
    (PROMETHEUS, "preprocess", 9101),
    (PROMETHEUS, "embedding", 9102),
    (PROMETHEUS, "interest", 9103),
    (PROMETHEUS, "ranking", 9104),
    (PROMETHEUS, "tf-serving", 8501),
}


def _tool_or_skip(found: bool, what: str) -> None:
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing (CI installs it: make deploy-tools)")
        pytest.skip(f"{what} is not installed (make deploy-tools)")


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        _tool_or_skip(False, name)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """The overlay's name and its objects, as kubectl kustomize renders them."""
    _tool_or_skip(shutil.which("kubectl") is not None, "kubectl")
    yaml = _module("yaml")
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / request.param)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return request.param, [doc for doc in yaml.safe_load_all(out) if doc]


def _objects(rendered: tuple[str, list[dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered[1] if o["kind"] == kind}


def _workloads(rendered: tuple[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Deployments, StatefulSets, Jobs and CronJobs (as the Job they make) by name."""
    found: dict[str, dict[str, Any]] = {}
    for kind in ("Deployment", "StatefulSet", "Job"):
        found.update(_objects(rendered, kind))
    for name, cron_job in _objects(rendered, "CronJob").items():
        found[name] = {"kind": "CronJob", **cron_job["spec"]["jobTemplate"]}
    return found


def _containers(rendered: tuple[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, workload in _workloads(rendered).items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield name, container


def _environment(
    rendered: tuple[str, list[dict[str, Any]]], container: dict[str, Any]
) -> dict[str, str]:
    """The container's environment: its ConfigMaps, then its own entries (which win)."""
    config_maps = _objects(rendered, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    env.update({entry["name"]: entry["value"] for entry in container.get("env", [])})
    return env


def _setting_names() -> set[str]:
    """Every EVOREC_ variable a Settings field reads."""
    names = set()
    for field, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names |= {f"{ENV_PREFIX}{field}__{sub}".upper() for sub in section.model_fields}
        else:
            names.add(f"{ENV_PREFIX}{field}".upper())
    return names


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def _served(container: dict[str, Any]) -> str | None:
    """NAME of `serve NAME` in the container's arguments."""
    args = container.get("args", [])
    return args[1] if args[:1] == ["serve"] else None


def _port(container: dict[str, Any], name: str) -> int:
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == name)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    kubernetes_validate = _module("kubernetes_validate")
    for obj in rendered[1]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_variable_is_a_setting_and_the_settings_load(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = _setting_names()
    checked = 0
    for name, container in _containers(rendered):
        if not container["image"].startswith(EVOREC_IMAGES):
            continue
        env = _environment(rendered, container)
        unknown = {v for v in env if v.startswith(ENV_PREFIX) and v not in known}
        assert not unknown, f"{name}: {sorted(unknown)} are not settings"
        _settings(env, monkeypatch)
        checked += 1
    assert checked >= 5  # four services and the job


def test_each_service_listens_and_is_probed_where_its_settings_say(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = set()
    for name, container in _containers(rendered):
        service = _served(container)
        if service is None:
            continue
        assert service in SERVICES, f"{name} serves an unknown service {service!r}"
        served.add(service)
        endpoint = _settings(_environment(rendered, container), monkeypatch).endpoint(service)
        assert endpoint.host == "0.0.0.0", f"{name} listens on {endpoint.host} only"
        assert _port(container, "grpc") == endpoint.port
        assert _port(container, "metrics") == endpoint.metrics_port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            grpc = container[probe]["grpc"]
            assert grpc["port"] == endpoint.port, f"{name} {probe} asks another port"
            assert grpc["service"] == SERVICES[service].full_name, f"{name} {probe}"
    assert served == set(SERVICES)


def test_every_address_a_service_dials_is_a_service_selecting_its_pods(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _objects(rendered, "Service")
    workloads = _workloads(rendered)
    for name, container in _containers(rendered):
        own = _served(container)
        if own is None:
            continue
        settings = _settings(_environment(rendered, container), monkeypatch)
        targets = {other: settings.endpoint(other).target for other in SERVICES if other != own}
        if own == "ranking" and settings.serving.backend == "tf_serving":
            targets["tf-serving"] = settings.serving.tf_serving_target
        for target in targets.values():
            host, port = target.removeprefix("dns:///").rsplit(":", 1)
            assert target.startswith("dns:///"), f"{name} dials {target}: not every pod"
            service = services.get(host)
            assert service is not None, f"{name} dials {target}: no such Service"
            assert service["spec"]["clusterIP"] == "None", f"{host} is not headless"
            assert int(port) in {p["port"] for p in service["spec"]["ports"]}
            selected = [
                w
                for w in workloads.values()
                if _matches(service["spec"]["selector"], _pod_labels(w))
            ]
            assert selected, f"Service {host} selects no pods"
            assert any(
                int(port) == int(p["containerPort"])
                for w in selected
                for c in w["spec"]["template"]["spec"]["containers"]
                for p in c["ports"]
            ), f"no pod of Service {host} listens on {port}"


def test_every_service_budget_and_autoscaler_has_its_pods(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    workloads = _workloads(rendered)
    for name, service in _objects(rendered, "Service").items():
        pods = [
            w for w in workloads.values() if _matches(service["spec"]["selector"], _pod_labels(w))
        ]
        assert pods, f"Service {name} selects no pods"
        ports = {
            p["name"]
            for w in pods
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no port {port['targetPort']}"
    for name, budget in _objects(rendered, "PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(_matches(selector, _pod_labels(w)) for w in workloads.values()), name
    for name, scaler in _objects(rendered, "HorizontalPodAutoscaler").items():
        target = scaler["spec"]["scaleTargetRef"]
        assert target["name"] in _objects(rendered, target["kind"]), name


def test_pods_run_as_non_root_on_a_read_only_root_with_a_writable_data_volume(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    for name, workload in _workloads(rendered).items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{name}: no writable /tmp"
            if container["image"].startswith(EVOREC_IMAGES):
                assert not mounts["/data"].get("readOnly"), f"{name}: /data is not writable"


def test_state_lives_on_volumes_where_the_settings_point(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    workloads = _workloads(rendered)
    for name in ("interest", "embedding"):
        # Single-writer SQLite: one replica, its own claim on /data.
        workload = workloads[name]
        assert workload["kind"] == "StatefulSet"
        assert workload["spec"]["replicas"] == 1
        claims = [c["metadata"]["name"] for c in workload["spec"]["volumeClaimTemplates"]]
        assert claims == ["data"]
    mounts = {
        name: {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for name, container in _containers(rendered)
    }
    container = next(c for n, c in _containers(rendered) if n == "ranking")
    settings = _settings(_environment(rendered, container), monkeypatch)
    assert settings.data_dir == Path("/data")
    assert mounts["ranking"][str(settings.serving.base_path)] == "models"
    assert mounts["embedding"][str(settings.dataset_path.parent)] == "datasets"
    assert mounts["prepare-model"][str(settings.dataset_path.parent)] == "datasets"
    assert mounts["prepare-model"][str(settings.serving.base_path)] == "models"


def test_tf_serving_gets_a_gpu_and_serving_configs(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    workloads = _workloads(rendered)
    if rendered[0] != "gpu":
        assert "tf-serving" not in workloads
        return
    pod = workloads["tf-serving"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]
    assert pod["tolerations"]
    assert container["image"] == "tensorflow/serving:2.21.0-gpu"
    assert "--enable_model_warmup=true" in container["args"]
    config = _objects(rendered, "ConfigMap")["tf-serving-config"]["data"]
    for name in ("batching.config", "monitoring.config"):
        assert config[name] == (ROOT / "serving" / name).read_text(), (
            f"{name} differs from serving/"
        )
    assert 'base_path: "/models/encoder"' in config["models.config"]


def _peer(peer: dict[str, Any]) -> str:
    """Who a policy peer is: a workload's name, the callers, or Prometheus."""
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    if labels.get("evorec.io/caller") == "true":
        return CALLERS
    if labels.get("app.kubernetes.io/name") == "prometheus":
        return PROMETHEUS
    if labels.get("k8s-app") == "kube-dns":
        return "dns"
    assert "namespaceSelector" not in peer, f"unexpected peer {peer}"
    return str(labels["app.kubernetes.io/name"])


def test_network_policies_allow_exactly_the_edges_of_the_data_flow(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    policies = _objects(rendered, "NetworkPolicy")
    deny = policies.pop("deny-all")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    ingress, egress = set(), set()
    for policy in policies.values():
        spec = policy["spec"]
        selected = spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name", "*")
        for rule in spec.get("ingress", []):
            for peer in rule["from"]:
                ingress |= {(_peer(peer), selected, p["port"]) for p in rule["ports"]}
        for rule in spec.get("egress", []):
            for peer in rule["to"]:
                egress |= {(selected, _peer(peer), p["port"]) for p in rule["ports"]}
    assert ingress == GRPC_EDGES | METRICS_EDGES
    internal = {edge for edge in GRPC_EDGES if edge[0] != CALLERS}
    assert egress == internal | {("*", "dns", 53)}
    # Every evorec pod is selected by its own policy, or it would be left to deny-all only.
    for name in _workloads(rendered):
        if name != "prepare-model":
            assert name in policies, f"no policy for {name}"


def test_the_dashboard_asks_for_metrics_the_services_export() -> None:
    from evorec.platform.metrics import RpcMetrics

    dashboard = json.loads(
        (ROOT / "deploy/observability/grafana/dashboards/evorec.json").read_text()
    )
    queried = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bgrpc_server_\w+", target["expr"])
    }
    exported = {metric.name for metric in RpcMetrics.create().registry.collect()}
    assert queried
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
