"""Provider adapters, registered by kind (the prefix of ``litellm_params.model``).

Adding a provider means adding a module and one line to :data:`ADAPTERS`.
"""

from __future__ import annotations

from providers.adapter import Adapter
from providers.azure import AzureAdapter
from providers.base import Deployment, Usage
from providers.bedrock import BedrockAdapter
from providers.ollama import OllamaAdapter
from providers.openai import OpenAIAdapter
from providers.vllm import HostedVLLMAdapter

ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "azure": AzureAdapter(),
    "bedrock": BedrockAdapter(),
    "hosted_vllm": HostedVLLMAdapter(),
    "ollama_chat": OllamaAdapter(),
    "ollama": OllamaAdapter(),
}

# Route prefixes LiteLLM accepts that mean the same API here.
_ROUTE_PREFIXES = {"bedrock": ("converse/",)}


def parse_model(model: str) -> tuple[str, str]:
    """Split ``"kind/upstream-id"`` (LiteLLM's format) into kind and id."""
    kind, _, upstream = model.partition("/")
    for prefix in _ROUTE_PREFIXES.get(kind, ()):
        if upstream.startswith(prefix):
            upstream = upstream[len(prefix):]
    return kind, upstream


__all__ = ["ADAPTERS", "Adapter", "Deployment", "Usage", "parse_model"]
