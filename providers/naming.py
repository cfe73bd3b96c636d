"""LiteLLM's model naming: ``"<kind>/<upstream id>"``, or a bare name whose kind LiteLLM infers.

A bare name is OpenAI's (LiteLLM's default), except for the well-known families
LiteLLM itself sends elsewhere and where that is unambiguous (the pinned
litellm's ``get_llm_provider``): ``claude-*`` is Anthropic, ``gemini-*`` is
Vertex AI, OpenAI's completion-only models are ``text-completion-openai`` and
``command-*`` is Cohere. Pure: no I/O, no litellm import.
"""

from __future__ import annotations

# Route prefixes LiteLLM accepts that mean the same API here.
_ROUTE_PREFIXES = {"bedrock": ("converse/",)}
# OpenAI's completion-only models (litellm.open_ai_text_completion_models)
_TEXT_COMPLETION = ("gpt-3.5-turbo-instruct", "babbage-002", "davinci-002", "text-davinci-", "text-curie-",
                    "text-babbage-", "text-ada-")
_INFERRED = (("claude-", "anthropic"), ("gemini-", "vertex_ai"), ("command-", "cohere_chat"))


def infer_kind(model: str) -> str:
    """The provider kind LiteLLM uses for a bare model name."""
    if model.startswith(_TEXT_COMPLETION):
        return "text-completion-openai"
    for prefix, kind in _INFERRED:
        if model.startswith(prefix):
            return kind
    return "openai"


def parse_model(model: str) -> tuple[str, str]:
    """Split ``"kind/upstream-id"`` (LiteLLM's format) into kind and id; a bare name gets LiteLLM's kind.

    The id may be empty (``"azure/"``): the config loader rejects that with the key's name.
    """
    if "/" not in model:
        return infer_kind(model), model
    kind, _, upstream = model.partition("/")
    for prefix in _ROUTE_PREFIXES.get(kind, ()):
        if upstream.startswith(prefix):
            upstream = upstream[len(prefix):]
    return kind, upstream
