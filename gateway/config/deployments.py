"""One deployment from its resolved ``litellm_params`` (pure): the config loader's and the wildcards'."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from providers import ADAPTERS, parse_model
from providers.base import Deployment

SECRET_KEYS = frozenset(
    {"api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "key", "url", "password",
     "vertex_credentials"}
)


def _with_key_file(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """``vertex_credentials`` may be the key's JSON or, as in LiteLLM, the path of a key file: read it here
    (the config is loaded at the edge; adapters never do I/O)."""
    value = params.get("vertex_credentials")
    if not isinstance(value, str) or not value or value.lstrip().startswith("{"):
        return params
    try:
        return {**params, "vertex_credentials": Path(value).read_text(encoding="utf-8")}
    except OSError as exc:
        raise ValueError(f"cannot read the vertex_credentials file: {exc.strerror or exc}") from None


def build_deployment(dep_id: str, model_name: str, model_info: Mapping[str, Any],
                     params: Mapping[str, Any]) -> Deployment:
    """``params`` has every environment reference resolved; its kind must be in ADAPTERS.
    Raises ValueError naming a required litellm_params key that is missing."""
    kind, model = parse_model(str(params["model"]))
    adapter = ADAPTERS[kind]
    params = _with_key_file(params)
    missing = [name for name in adapter.required_params if not params.get(name)]
    if missing:
        raise ValueError(f"a {kind} deployment needs litellm_params.{', '.join(missing)}")
    return Deployment(
        id=dep_id,
        model_name=model_name,
        kind=kind,
        model=model,
        api_base=(params.get("api_base") or None),
        credentials=adapter.credentials(params),
        api_version=params.get("api_version"),
        timeout=float(params.get("timeout", 600.0)),
        stream_timeout=float(params.get("stream_timeout", params.get("timeout", 60.0))),
        connect_timeout=float(params.get("connect_timeout", 5.0)),
        max_retries=int(params.get("max_retries", 0)),
        model_info=MappingProxyType(dict(model_info)),
        litellm_params=MappingProxyType({k: v for k, v in params.items() if k not in SECRET_KEYS}),
    )
