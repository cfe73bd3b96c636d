"""Provider adapters, registered by kind (the prefix of ``litellm_params.model``).

Adding a provider means adding a module and one line to :data:`ADAPTERS`.
"""

from __future__ import annotations

from providers.adapter import Adapter
from providers.anthropic import AnthropicAdapter
from providers.azure import AzureAdapter
from providers.base import Deployment, Usage
from providers.bedrock import BedrockAdapter
from providers.demo import DemoAdapter
from providers.gemini import GeminiAdapter, VertexAdapter
from providers.hosted import HOSTED, HostedAdapter
from providers.naming import parse_model
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
    "gemini": GeminiAdapter(),
    "vertex_ai": VertexAdapter(),
    "demo": DemoAdapter(),  # the quick start's deterministic test double (providers/demo.py)
    # the hosted providers that speak OpenAI's wire: one table (providers/hosted.py), one adapter
    **{h.kind: HostedAdapter(h) for h in HOSTED},
    "anthropic": AnthropicAdapter(),
}

# Kinds LiteLLM knows that Taskgate does not serve: their deployments load disabled with this reason.
UNSUPPORTED = {
    "text-completion-openai": "OpenAI's legacy completions API (/v1/completions) is not served",
    "sagemaker": "SageMaker endpoints are not supported yet",
    "cohere": "Cohere's API is not supported yet",
    "cohere_chat": "Cohere's API is not supported yet",
    "huggingface": "Hugging Face inference is not supported yet",
    "replicate": "Replicate is not supported yet",
}


def unsupported_reason(kind: str) -> str:
    """Why a deployment of ``kind`` cannot be served (``kind`` not in :data:`ADAPTERS`)."""
    known = UNSUPPORTED.get(kind)
    if known:
        return f"provider kind '{kind}': {known}"
    return f"unknown provider kind '{kind}' (supported: {', '.join(sorted(ADAPTERS))})"


__all__ = ["ADAPTERS", "Adapter", "Deployment", "Usage", "parse_model", "unsupported_reason"]
