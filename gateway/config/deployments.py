"""One deployment from its resolved ``litellm_params`` (pure): the config loader's and the wildcards'."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from providers import ADAPTERS, parse_model
from providers.base import Deployment

SECRET_KEYS = frozenset(
    {"api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "key", "url", "password"}
)


def build_deployment(dep_id: str, model_name: str, model_info: Mapping[str, Any],
                     params: Mapping[str, Any]) -> Deployment:
    """``params`` has every environment reference resolved; its kind must be in ADAPTERS.
    Raises ValueError naming a required litellm_params key that is missing."""
    kind, model = parse_model(str(params["model"]))
    adapter = ADAPTERS[kind]
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
