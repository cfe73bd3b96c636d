"""deploy/k8s/ is valid Kubernetes (kubernetes-validate, strict, against the bundled schemas), its
config is a valid Taskgate config, and its stop settings match the drain (docs/SCALING.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.load import parse
from gateway.edge.asgi import STOP_BOUND_S

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
# what the Secret taskgate-secrets puts in the pod's environment (deployment.yaml)
ENV = {"OPENAI_API_KEY": "sk-test", "TASKGATE_REDIS_URL": "redis://redis:6379/0", "TASKGATE_MASTER_KEY": "sk-master"}


def _validator() -> list[str]:
    exe = shutil.which("kubernetes-validate") or str(Path(sys.executable).with_name("kubernetes-validate"))
    if not Path(exe).exists():
        pytest.fail("kubernetes-validate is not installed (pip install -e '.[test]')")
    return [exe, "--strict", "--quiet"]


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / name).read_text())
    assert isinstance(doc, dict)
    return doc


def test_every_manifest_passes_the_schema_validator() -> None:
    assert {p.name for p in MANIFESTS} >= {"configmap.yaml", "deployment.yaml", "service.yaml", "pdb.yaml",
                                           "hpa.yaml"}
    result = subprocess.run([*_validator(), *map(str, MANIFESTS)], capture_output=True, text=True, timeout=120)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_manifest(tmp_path: Path) -> None:
    """The check can fail: a misspelt field in the Deployment is an error."""
    broken = (K8S / "deployment.yaml").read_text().replace("terminationGracePeriodSeconds",
                                                          "terminationGracePeriodSecs")
    path = tmp_path / "deployment.yaml"
    path.write_text(broken)
    result = subprocess.run([*_validator(), str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout


def test_the_configmap_holds_a_valid_taskgate_config() -> None:
    text = _load("configmap.yaml")["data"]["gateway.yaml"]
    config = parse(text, "configmap.yaml", ENV)
    assert config.store.url.startswith("redis://"), "replicas share one Redis"
    assert config.auth_enabled, "the pods listen on 0.0.0.0: without auth, taskgate serve refuses to start"


def test_the_stop_fits_in_the_grace_period() -> None:
    config = parse(_load("configmap.yaml")["data"]["gateway.yaml"], "configmap.yaml", ENV)
    pod = _load("deployment.yaml")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = config.server.drain_timeout_s
    grace = pod["terminationGracePeriodSeconds"]
    print(f"\npreStop {pre_stop}s + drain {drain:.0f}s + stop bound {STOP_BOUND_S:.0f}s < grace {grace}s")
    assert grace > pre_stop + drain + STOP_BOUND_S
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e]
    assert refs and set(refs) == {"taskgate-secrets"}, "secrets come from a Secret, never the ConfigMap"
