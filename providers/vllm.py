"""Local OpenAI-compatible servers: vLLM, llama.cpp's llama-server, LM Studio.

They speak OpenAI's protocol at ``api_base`` (which includes ``/v1``); the key is
optional. llama.cpp may send its final usage chunk (``choices: []`` with
``usage`` and ``timings``) even when usage was not asked for: the shared stream
decoder handles both.
"""

from __future__ import annotations

from providers.openai import OpenAIAdapter


class HostedVLLMAdapter(OpenAIAdapter):
    kind = "hosted_vllm"
    required_params: tuple[str, ...] = ("api_base",)
    default_base = None
    keeps_metadata_with_store = False
