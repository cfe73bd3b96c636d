"""Token estimates for streams that ended without the provider's usage.

Uses tiktoken with the encoding files that LiteLLM bundles (so nothing is
downloaded), and falls back to ~4 characters per token without them. Records
made from an estimate say so (``usage_source: estimated``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any, Callable, Mapping

import orjson

from providers.base import Usage
from providers.openai_wire import message_text

PER_MESSAGE_OVERHEAD = 4  # role and separators, as in OpenAI's counting recipe


@functools.lru_cache(maxsize=1)
def _counter() -> Callable[[str], int]:
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations and "TIKTOKEN_CACHE_DIR" not in os.environ:
        bundled = os.path.join(spec.submodule_search_locations[0], "litellm_core_utils", "tokenizers")
        if os.path.isdir(bundled):
            os.environ["TIKTOKEN_CACHE_DIR"] = bundled
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base")
        return lambda text: len(encoding.encode(text, disallowed_special=()))
    except Exception:  # no tiktoken, or no encoding file offline
        return lambda text: (len(text) + 3) // 4


def count_tokens(text: str) -> int:
    return _counter()(text) if text else 0


def estimate_usage(body: Mapping[str, Any], streamed: list[str]) -> Usage:
    messages = body.get("messages") or []
    prompt = sum(count_tokens(message_text(m.get("content"))) + PER_MESSAGE_OVERHEAD
                 for m in messages if isinstance(m, dict))
    return Usage(input_tokens=prompt, output_tokens=count_tokens("".join(streamed)))


def worst_case_usage(body: Mapping[str, Any], default_max_output: int) -> Usage:
    """A safe upper bound of a request's tokens, for budget reservations (no tokenizer on the hot path)."""
    prompt = body.get("messages") if "messages" in body else body.get("input")
    prompt_tokens = len(orjson.dumps(prompt)) // 3 + 16  # a token is rarely under 3 bytes of JSON
    max_out = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_output
    out = max_out if isinstance(max_out, int) and not isinstance(max_out, bool) and max_out > 0 else default_max_output
    return Usage(input_tokens=prompt_tokens, output_tokens=out * choices(body))


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
