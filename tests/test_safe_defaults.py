"""Safe defaults: without auth, ``taskgate serve`` listens on loopback only (real processes); the
Docker image and the Kubernetes manifests start only with auth; ``/metrics`` can require a key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.cli.bind import bind_refusal, is_loopback
from gateway.config.load import ConfigError, parse
from tests.conftest import base_config, free_port, model_entry
from tests.procs import ManagedProcess, http_status

ROOT = Path(__file__).resolve().parent.parent
DEMO = {"model": "demo/taskgate-demo", "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("192.168.1.2", False), ("example.com", False),
    ("", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bind_rule_table() -> None:
    open_cfg = parse(yaml.safe_dump({"model_list": [model_entry("demo", DEMO)]}), "t.yaml", {})
    allowed = parse(yaml.safe_dump({"model_list": [model_entry("demo", DEMO)],
                                    "server": {"allow_unauthenticated": True}}), "t.yaml", {})
    locked = parse(yaml.safe_dump({"model_list": [model_entry("demo", DEMO)],
                                   "auth": {"keys": [{"key": "sk-12345678", "tenant": "t"}]}}), "t.yaml", {})
    assert bind_refusal(open_cfg, "127.0.0.1") is None
    assert "refusing to listen on 0.0.0.0" in (bind_refusal(open_cfg, "0.0.0.0") or "")
    assert bind_refusal(allowed, "0.0.0.0") is None
    assert bind_refusal(locked, "0.0.0.0") is None


def _serve(config_path: Path, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "gateway", "serve", "--config", str(config_path), "--host", host,
            "--port", str(port)]


def test_serve_refuses_a_public_address_without_auth(redis_server: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(base_config(redis_server.url, [model_entry("demo", DEMO)])))
    port = free_port()
    result = subprocess.run(_serve(cfg, "0.0.0.0", port), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "refusing to listen on 0.0.0.0 with auth off" in result.stderr
    assert "server.allow_unauthenticated: true" in result.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_allow_unauthenticated_starts_and_warns_loudly(redis_server: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(base_config(redis_server.url, [model_entry("demo", DEMO)],
                                              server={"allow_unauthenticated": True})))
    port = free_port()
    proc = ManagedProcess("gateway", _serve(cfg, "0.0.0.0", port), tmp_path / "gw.log", cwd=tmp_path)
    proc.start(http_status(f"http://127.0.0.1:{port}/readyz"), timeout=30)
    try:
        assert "WARNING (security): auth is OFF and taskgate listens on 0.0.0.0" in proc.log()
    finally:
        proc.stop()


def test_auth_on_binds_anywhere_without_a_warning(redis_server: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(base_config(redis_server.url, [model_entry("demo", DEMO)],
                                              auth={"keys": [{"key": "sk-bind-admin-1", "tenant": "t"}]})))
    port = free_port()
    proc = ManagedProcess("gateway", _serve(cfg, "0.0.0.0", port), tmp_path / "gw.log", cwd=tmp_path)
    proc.start(http_status(f"http://127.0.0.1:{port}/readyz"), timeout=30)
    try:
        assert "WARNING (security)" not in proc.log() and "auth: on (1 key(s))" in proc.log()
    finally:
        proc.stop()


def test_the_docker_image_starts_only_with_auth() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "TASKGATE_CONFIG=/app/config/docker.yaml" in dockerfile
    assert "COPY deploy/docker/gateway.yaml ./config/docker.yaml" in dockerfile
    text = (ROOT / "deploy" / "docker" / "gateway.yaml").read_text()
    with pytest.raises(ConfigError, match="master_key"):
        parse(text, "docker.yaml", {})
    config = parse(text, "docker.yaml", {"TASKGATE_MASTER_KEY": "sk-docker-admin"})
    assert config.auth_enabled and bind_refusal(config, "0.0.0.0") is None


def test_metrics_can_require_an_admin_key(redis_server: Any, gateway_factory: Any) -> None:
    keys = [{"key": "sk-metrics-admin", "tenant": "ops", "admin": True}, {"key": "sk-metrics-user", "tenant": "t"}]
    gw = gateway_factory(base_config(redis_server.url, [model_entry("demo", DEMO)], auth={"keys": keys},
                                     server={"metrics_auth": True}))
    none = httpx.get(gw.url + "/metrics", timeout=10)
    assert none.status_code == 401 and none.json()["error"]["type"] == "authentication_error"
    assert httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-wrong-key"}, timeout=10).status_code \
        == 401
    user = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-metrics-user"}, timeout=10)
    assert user.status_code == 403 and user.json()["error"]["code"] == "admin_required"
    admin = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-metrics-admin"}, timeout=10)
    assert admin.status_code == 200 and "taskgate_requests_total" in admin.text


def test_metrics_stay_open_by_default(redis_server: Any, gateway_factory: Any) -> None:
    gw = gateway_factory(base_config(redis_server.url, [model_entry("demo", DEMO)],
                                     auth={"keys": [{"key": "sk-metrics-admin", "tenant": "ops", "admin": True}]}))
    assert httpx.get(gw.url + "/metrics", timeout=10).status_code == 200
