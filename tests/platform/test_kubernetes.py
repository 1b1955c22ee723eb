"""deploy/kubernetes renders, every manifest is valid for Kubernetes, and says what we rely on.

Rendered here rather than by kustomize (not a Python package): the base uses only
``resources`` and ``images``, applied below. Schemas ship with kubernetes-validate: offline.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.paths import REPO

BASE = REPO / "deploy" / "kubernetes"
# The oldest minor version still commonly run; newer ones accept the same manifests.
KUBERNETES_VERSION = "1.30.0"
SECRET_ENV = {"HIREHOOK_SECRET_KEY", "HIREHOOK_DATABASE_URL", "HIREHOOK_REDIS_URL"}

Doc = dict[str, Any]


def render() -> list[Doc]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "images"}, (
        "the renderer below implements only resources and images"
    )
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization["images"]}
    docs: list[Doc] = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((BASE / name).read_text()) if d)
    for doc in docs:
        for container in containers(doc):
            container["image"] = images.get(container["image"], container["image"])
    return docs


def pod_spec(doc: Doc) -> Doc | None:
    if doc["kind"] in {"Deployment", "Job"}:
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc)
    return [] if spec is None else [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], Doc]:
    rendered = render()
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in rendered}
    assert len(by_key) == len(rendered), "two manifests share a kind and name"
    return by_key


def test_every_manifest_is_valid_for_kubernetes(docs: dict[tuple[str, str], Doc]) -> None:
    assert set(docs) == {
        ("ConfigMap", "hirehook"),
        ("Job", "hirehook-migrate"),
        ("Deployment", "hirehook-api"),
        ("Service", "hirehook-api"),
        ("PodDisruptionBudget", "hirehook-api"),
        ("Deployment", "hirehook-worker"),
        ("HorizontalPodAutoscaler", "hirehook-worker"),
    }
    for doc in docs.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_validation_catches_a_mistake(docs: dict[tuple[str, str], Doc]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(docs["Deployment", "hirehook-api"]))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_api_and_worker_run_the_same_image_as_the_migration(
    docs: dict[tuple[str, str], Doc],
) -> None:
    images = {c["image"] for d in docs.values() for c in containers(d)}
    assert images == {"registry.example.com/hirehook:0.1.0"}


def test_secrets_come_from_secrets_and_settings_from_the_configmap(
    docs: dict[tuple[str, str], Doc],
) -> None:
    config = docs["ConfigMap", "hirehook"]["data"]
    assert not SECRET_ENV & set(config)
    for doc in docs.values():
        for container in containers(doc):
            env = {e["name"]: e for e in container.get("env", [])}
            assert set(env) >= SECRET_ENV, f"{container['name']} lacks a secret setting"
            for name, entry in env.items():
                if name in SECRET_ENV:
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "hirehook"
                else:
                    assert "valueFrom" not in entry or "secretKeyRef" not in entry["valueFrom"]
                # A literal value must never be a credential.
                assert not any(w in name for w in ("SECRET", "PASSWORD", "_URL")) or (
                    "valueFrom" in entry
                ), name
            assert container["envFrom"] == [{"configMapRef": {"name": "hirehook"}}]
    api = pod_spec(docs["Deployment", "hirehook-api"])
    assert api is not None
    [tenants] = [v for v in api["volumes"] if v["name"] == "tenants"]
    assert tenants["secret"]["secretName"] == "hirehook-tenants"


def test_every_container_is_sized_and_locked_down(docs: dict[tuple[str, str], Doc]) -> None:
    for doc in docs.values():
        spec = pod_spec(doc)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in containers(doc):
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_api_probes_and_graceful_shutdown(docs: dict[tuple[str, str], Doc]) -> None:
    spec = pod_spec(docs["Deployment", "hirehook-api"])
    assert spec is not None
    [api] = spec["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/intake"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert int(env["HIREHOOK_API_WORKERS"]) >= 1
    # Settings' defaults: 25 s request deadline < 28 s drain; plus the preStop sleep.
    pre_stop = int(api["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + 28 > 25


def test_migration_job_gives_up(docs: dict[tuple[str, str], Doc]) -> None:
    job = docs["Job", "hirehook-migrate"]
    assert 0 <= job["spec"]["backoffLimit"] <= 3
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["hirehook", "migrate"]


def test_workers_scale_on_due_work_with_cpu_as_fallback(
    docs: dict[tuple[str, str], Doc],
) -> None:
    hpa = docs["HorizontalPodAutoscaler", "hirehook-worker"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hirehook-worker"
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["External"]["external"]["metric"]["name"] == "hirehook_work_due"
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    pdb = docs["PodDisruptionBudget", "hirehook-api"]
    api = docs["Deployment", "hirehook-api"]
    assert pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
    service = docs["Service", "hirehook-api"]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


def test_workers_serve_metrics_where_prometheus_scrapes(
    docs: dict[tuple[str, str], Doc],
) -> None:
    deployment = docs["Deployment", "hirehook-worker"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    spec = pod_spec(deployment)
    assert spec is not None
    [worker] = spec["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    [port] = [p["containerPort"] for p in worker["ports"] if p["name"] == "metrics"]
    assert env["HIREHOOK_WORKER_METRICS_PORT"] == str(port) == annotations["prometheus.io/port"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
