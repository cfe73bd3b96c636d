"""Token estimates for streams that ended without the provider's usage.

Uses tiktoken with the encoding files that LiteLLM bundles (so nothing is
downloaded), and falls back to ~4 characters per token without them. Records
made from an estimate say so (``usage_source: estimated``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any, Callable

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


def estimate_usage(body: dict[str, Any], streamed: list[str]) -> Usage:
    messages = body.get("messages") or []
    prompt = sum(count_tokens(message_text(m.get("content"))) + PER_MESSAGE_OVERHEAD
                 for m in messages if isinstance(m, dict))
    return Usage(input_tokens=prompt, output_tokens=count_tokens("".join(streamed)))
