"""LiteLLM's environment defaults: the variables a deployment's values come from when the config
does not set them (pure: the caller passes the environment).

LiteLLM reads a provider's key (and for some its base URL, region or API version)
from the environment when ``litellm_params`` does not give it. A deployment that
needs such a value and finds it nowhere is disabled by the config loader with the
variable's name, as for a missing ``os.environ/NAME`` reference.
"""

from __future__ import annotations

from typing import Any, Mapping

from providers.hosted import HOSTED_BY_KIND

# kind -> litellm_params key -> (variables in LiteLLM's order, required)
_OTHERS: Mapping[str, Mapping[str, tuple[tuple[str, ...], bool]]] = {
    # used once an `anthropic` adapter is registered (until then such deployments load disabled)
    "anthropic": {"api_base": (("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"), False),
                  "api_key": (("ANTHROPIC_API_KEY",), True)},
    "gemini": {"api_base": (("GEMINI_API_BASE",), False), "api_key": (("GOOGLE_API_KEY", "GEMINI_API_KEY"), True)},
    "vertex_ai": {"vertex_project": (("VERTEXAI_PROJECT", "VERTEX_PROJECT"), True),
                  "vertex_location": (("VERTEXAI_LOCATION", "VERTEX_LOCATION"), False),
                  "vertex_credentials": (("VERTEXAI_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS"), True)},
    "azure": {"api_base": (("AZURE_API_BASE",), False), "api_key": (("AZURE_API_KEY",), False),
              "api_version": (("AZURE_API_VERSION",), False)},
    "bedrock": {"aws_access_key_id": (("AWS_ACCESS_KEY_ID",), True),
                "aws_secret_access_key": (("AWS_SECRET_ACCESS_KEY",), True),
                "aws_session_token": (("AWS_SESSION_TOKEN",), False),
                "aws_region_name": (("AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION"), False)},
}


def _table(kind: str, params: Mapping[str, Any]) -> Mapping[str, tuple[tuple[str, ...], bool]]:
    hosted = HOSTED_BY_KIND.get(kind)
    if hosted is not None:
        return {"api_base": (hosted.base_env, False), "api_key": (hosted.key_env, hosted.key_required)}
    if kind == "openai" and not params.get("api_base"):  # OpenAI itself (a custom api_base may need no key)
        return {"api_key": (("OPENAI_API_KEY",), True)}
    return _OTHERS.get(kind, {})


def env_defaults(kind: str, params: Mapping[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """``params`` with the values LiteLLM would read from ``env``, and the variable(s) missing for a
    required one (``None`` when nothing required is missing)."""
    out = dict(params)
    for key, (names, required) in _table(kind, params).items():
        if out.get(key) or not names:
            continue
        value = next((env[name] for name in names if env.get(name)), None)
        if value:
            out[key] = value
        elif required:
            return out, " or ".join(names)
    return out, None


def env_names() -> frozenset[str]:
    """Every variable :func:`env_defaults` may read."""
    names = {"OPENAI_API_KEY"}
    for hosted in HOSTED_BY_KIND.values():
        names.update(hosted.base_env + hosted.key_env)
    for table in _OTHERS.values():
        for found, _ in table.values():
            names.update(found)
    return frozenset(names)
