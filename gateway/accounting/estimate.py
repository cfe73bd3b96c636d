"""Token estimates for attempts that ended without the provider's usage.

Uses tiktoken with the encoding files that LiteLLM bundles (``cl100k_base`` and
``o200k_base``; nothing is downloaded) and falls back to ~4 characters per
token without them. The encoding follows the model family:

* ``o200k_base``: GPT-4o and later (gpt-4o, gpt-4.1, gpt-4.5, gpt-5*, chatgpt-4o,
  gpt-audio, gpt-realtime, gpt-oss), the o-series (o1, o3, o4-...);
* ``cl100k_base``: older OpenAI models, embeddings, and — as an approximation —
  everything else. Measured against the real tokenizers on the mixed corpus of
  ``tests/test_estimate.py`` (English prose, code, JSON, Chinese): Claude's
  (LiteLLM's bundled ``anthropic_tokenizer.json``) counts within 15 % of cl100k
  (the test asserts the bound). Llama 3 uses a 128k-vocabulary tiktoken BPE built
  on cl100k's and Qwen a 151k BPE of the same kind; their tokenizers are not
  available offline here, so that error is not measured (see docs/PRICING.md).

The prompt estimate counts message text, tool schemas (their JSON) and images
(OpenAI's vision rule: 85 tokens at ``detail: low``, else 765, a 1024x1024
image at high detail, since the size is unknown without decoding it). Records
made from an estimate say so (``usage_source: estimated``); one that may miss
hidden reasoning tokens (a cancelled reasoning model's stream) is a lower bound.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from typing import Any, Callable, Mapping

import orjson

from providers.base import Usage
from providers.openai_wire import message_text

PER_MESSAGE_OVERHEAD = 4  # role and separators, as in OpenAI's counting recipe
PER_TOOL_OVERHEAD = 8
IMAGE_LOW_DETAIL = 85
IMAGE_DEFAULT = 765  # 85 + 4 tiles x 170: a 1024x1024 image at high detail
_O200K = re.compile(r"(^|[/.])(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-6|chatgpt-4o|gpt-audio|gpt-realtime|gpt-oss|o[1-9]\b|"
                    r"o[1-9]-|codex)")
_REASONING = re.compile(r"(^|[/.])(o[1-9]\b|o[1-9]-|gpt-5|gpt-6|gpt-oss)|deepseek[.-]r1|qwq|reasoner|thinking|-r1\b")


def encoding_for(model: str) -> str:
    """The tiktoken encoding used to estimate ``model``'s tokens."""
    return "o200k_base" if _O200K.search(model.lower()) else "cl100k_base"


def may_reason(model: str, body: Mapping[str, Any]) -> bool:
    """Could this request produce hidden reasoning tokens that a text estimate cannot see?"""
    if any(body.get(k) for k in ("reasoning_effort", "reasoning", "thinking")):
        return True
    return bool(_REASONING.search(model.lower()))


@functools.lru_cache(maxsize=4)
def _counter(encoding_name: str) -> Callable[[str], int]:
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations and "TIKTOKEN_CACHE_DIR" not in os.environ:
        bundled = os.path.join(spec.submodule_search_locations[0], "litellm_core_utils", "tokenizers")
        if os.path.isdir(bundled):
            os.environ["TIKTOKEN_CACHE_DIR"] = bundled
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(encoding_name)
        return lambda text: len(encoding.encode(text, disallowed_special=()))
    except Exception:  # no tiktoken, or no encoding file offline
        return lambda text: (len(text) + 3) // 4


def count_tokens(text: str, model: str = "") -> int:
    return _counter(encoding_for(model))(text) if text else 0


def _images(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = part.get("image_url")
            detail = url.get("detail") if isinstance(url, dict) else None
            total += IMAGE_LOW_DETAIL if detail == "low" else IMAGE_DEFAULT
    return total


def prompt_tokens(body: Mapping[str, Any], model: str = "") -> int:
    """An estimate of a chat request's prompt: messages, images and tool schemas."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    total = 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += count_tokens(message_text(m.get("content")), model) + PER_MESSAGE_OVERHEAD + _images(m.get("content"))
        if m.get("tool_calls"):
            total += count_tokens(orjson.dumps(m["tool_calls"]).decode(), model)
    tools = body.get("tools")
    if isinstance(tools, list):
        total += sum(count_tokens(orjson.dumps(t).decode(), model) + PER_TOOL_OVERHEAD for t in tools)
    if "input" in body and not messages:  # embeddings
        raw = body["input"]
        texts = [raw] if isinstance(raw, str) else [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []
        total += sum(count_tokens(t, model) for t in texts)
    return total


def estimate_usage(body: Mapping[str, Any], streamed: list[str], model: str = "") -> Usage:
    """The usage of a request whose provider never reported it: its prompt and what was streamed."""
    model = model or str(body.get("model") or "")
    return Usage(input_tokens=prompt_tokens(body, model), output_tokens=count_tokens("".join(streamed), model))


def worst_case_usage(body: Mapping[str, Any], default_max_output: int) -> Usage:
    """A safe upper bound of a request's tokens, for budget reservations (no tokenizer on the hot path)."""
    prompt = body.get("messages") if "messages" in body else body.get("input")
    prompt_tokens = len(orjson.dumps(prompt)) // 3 + 16  # a token is rarely under 3 bytes of JSON
    max_out = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_output
    out = max_out if isinstance(max_out, int) and not isinstance(max_out, bool) and max_out > 0 else default_max_output
    tier = body.get("service_tier")  # a priority request reserves at priority prices
    return Usage(input_tokens=prompt_tokens, output_tokens=out * choices(body),
                 service_tier=tier if isinstance(tier, str) else None)


def choices(body: Mapping[str, Any]) -> int:
    """How many answers one request asks for (``n``, or ``best_of`` where an upstream honours it):
    each is billed its own output tokens, so the worst case multiplies. The front has already
    refused an ``n`` that is not a whole number in [1, 128] (gateway/fronts/chat.py)."""
    most = 1
    for key in ("n", "best_of"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            most = value
    return most
