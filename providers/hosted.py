"""The hosted providers that speak OpenAI's Chat Completions wire: one table, one adapter.

Each entry is what LiteLLM (the pinned version) uses for that provider: the
default base URL, the environment variable that can override it, and the
environment variables it reads the key from when ``litellm_params.api_key`` is
absent (first set wins). Sources: ``litellm/litellm_core_utils/get_llm_provider_logic.py``,
``litellm/constants.py`` and ``litellm/llms/<provider>/chat/transformation.py``.

The adapter is :class:`~providers.openai.OpenAIAdapter` with the entry's base
URL and no OpenAI-only fields: the body goes out as the client sent it, so every
parameter reaches the upstream (which honours or refuses it; none is dropped).
The environment is read by the config loader (providers/environment.py), not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.openai import OpenAIAdapter


@dataclass(frozen=True, slots=True)
class Hosted:
    """One OpenAI-compatible provider, as LiteLLM knows it."""

    kind: str
    base: str | None  # LiteLLM's default api_base; None: the config must give one
    base_env: tuple[str, ...] = ()  # environment variables LiteLLM reads the api_base from
    key_env: tuple[str, ...] = ()  # environment variables LiteLLM reads the key from, in order
    key_required: bool = True  # False: local servers, which take any key or none


HOSTED: tuple[Hosted, ...] = (
    Hosted("groq", "https://api.groq.com/openai/v1", ("GROQ_API_BASE",), ("GROQ_API_KEY",)),
    Hosted("mistral", "https://api.mistral.ai/v1", ("MISTRAL_API_BASE",), ("MISTRAL_API_KEY",)),
    Hosted("openrouter", "https://openrouter.ai/api/v1", ("OPENROUTER_API_BASE",),
           ("OPENROUTER_API_KEY", "OR_API_KEY")),
    Hosted("together_ai", "https://api.together.ai/v1", ("TOGETHER_AI_API_BASE",),
           ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN")),
    Hosted("deepseek", "https://api.deepseek.com/beta", ("DEEPSEEK_API_BASE",), ("DEEPSEEK_API_KEY",)),
    Hosted("fireworks_ai", "https://api.fireworks.ai/inference/v1", ("FIREWORKS_API_BASE",),
           ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY")),
    Hosted("xai", "https://api.x.ai/v1", ("XAI_API_BASE",), ("XAI_API_KEY",)),
    Hosted("perplexity", "https://api.perplexity.ai", ("PERPLEXITY_API_BASE",),
           ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY")),
    Hosted("cerebras", "https://api.cerebras.ai/v1", ("CEREBRAS_API_BASE",), ("CEREBRAS_API_KEY",)),
    Hosted("deepinfra", "https://api.deepinfra.com/v1/openai", ("DEEPINFRA_API_BASE",), ("DEEPINFRA_API_KEY",)),
    Hosted("nvidia_nim", "https://integrate.api.nvidia.com/v1", ("NVIDIA_NIM_API_BASE",), ("NVIDIA_NIM_API_KEY",)),
    Hosted("lm_studio", None, ("LM_STUDIO_API_BASE",), ("LM_STUDIO_API_KEY",), key_required=False),
    Hosted("llamafile", "http://127.0.0.1:8080/v1", ("LLAMAFILE_API_BASE",), ("LLAMAFILE_API_KEY",),
           key_required=False),
    Hosted("openai_like", None, (), (), key_required=False),
    Hosted("custom_openai", None, (), (), key_required=False),
)
HOSTED_BY_KIND = {h.kind: h for h in HOSTED}


class HostedAdapter(OpenAIAdapter):
    """An OpenAI-compatible hosted provider from :data:`HOSTED`."""

    keeps_metadata_with_store = False  # `metadata` is OpenAI's stored-completions field

    def __init__(self, hosted: Hosted) -> None:
        self.hosted = hosted
        self.kind = hosted.kind
        self.default_base = hosted.base
        # no default base: the config (or the base environment variable) must give one
        self.required_params = () if hosted.base else ("api_base",)
