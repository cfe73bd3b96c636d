"""Fake OpenAI API (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`).

``prefix`` is the path the API lives under (``/v1``; a hosted provider's own, such as Groq's
``/openai/v1``: any other path is a 404). Flavors: "openai" (strict, Bearer key required, `obfuscation` padding on stream chunks),
"vllm" and "llamacpp" (key optional: api_key=None accepts anything; unknown params
ignored; llama.cpp always ends a stream with a `choices: []` chunk carrying `usage` and
`timings`; vLLM honours `stream_options.continuous_usage_stats`)."""

from __future__ import annotations

import secrets

from .common import Behaviour, Usage
from .openai_wire import ChatCall, ChatCompletionsFake, usage_body
from .server import Exchange

FLAVORS = ("openai", "vllm", "llamacpp")


class OpenAIFake(ChatCompletionsFake):
    def __init__(self, name: str = "openai", api_key: str | None = "sk-fake", flavor: str = "openai",
                 prefix: str = "/v1"):
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}")
        super().__init__(name)
        self.prefix = prefix.rstrip("/")  # where the API lives: /v1, or a hosted provider's path (/openai/v1)
        self.api_key = api_key
        self.flavor = flavor
        self.strict = flavor == "openai"
        self.always_usage_chunk = flavor == "llamacpp"
        self.models = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]

    async def handle(self, ex: Exchange) -> None:
        path = ex.path.rstrip("/")
        route = (ex.method, "/v1" + path[len(self.prefix):] if path.startswith(self.prefix + "/") else path)
        if route not in {("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("GET", "/v1/models")}:
            await self.send_error(ex, 404, f"Invalid URL ({ex.method} {ex.path})", type="invalid_request_error")
            return
        if not await self.authorised(ex):
            return
        if route[1] == "/v1/models":
            await ex.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in self.models]})
            return
        model = ex.json.get("model") if isinstance(ex.json, dict) else None
        if isinstance(model, str) and model.startswith("unknown"):
            await self.send_error(ex, 404, f"The model `{model}` does not exist or you do not have access to it.",
                                  type="invalid_request_error", code="model_not_found")
            return
        if route[1] == "/v1/chat/completions":
            await self.chat(ex, model or "")
        else:
            await self.embeddings(ex, model or "")

    async def authorised(self, ex: Exchange) -> bool:
        if self.flavor != "openai" and self.api_key is None:
            return True
        auth = ex.headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if key and key == self.api_key:
            return True
        if self.flavor == "vllm":
            await ex.send_json(401, {"error": "Unauthorized"})
        elif self.flavor == "llamacpp":
            await ex.send_json(401, {"error": {"code": 401, "message": "Invalid API Key",
                                               "type": "authentication_error"}})
        elif not key:
            await self.send_error(ex, 401, "You didn't provide an API key. You need to provide your API key in an "
                                  "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                                  type="invalid_request_error", code="invalid_api_key")
        else:
            shown = key[:3] + "*" * 10 + key[-4:] if len(key) > 8 else key
            await self.send_error(ex, 401, f"Incorrect API key provided: {shown}. You can find your API key at "
                                  "https://platform.openai.com/account/api-keys.",
                                  type="invalid_request_error", code="invalid_api_key")
        return False

    async def send_failure(self, ex: Exchange, b: Behaviour) -> None:
        if b.kind == "429":
            retry = b.kw.get("retry_after", 1)
            await self.send_error(ex, 429, "Rate limit reached for requests. Please try again in "
                                  f"{retry}s.", type="requests", code="rate_limit_exceeded",
                                  headers={"retry-after": str(retry), "x-ratelimit-remaining-requests": "0"})
        elif b.kind == "503":
            await self.send_error(ex, 503, "The engine is currently overloaded, please try again later.",
                                  type="server_error", code=None)
        else:
            await self.send_error(ex, 500, "The server had an error while processing your request. Sorry about "
                                  "that!", type="server_error", code="server_error")

    def reply_headers(self) -> dict:
        return {"x-request-id": "req_" + secrets.token_hex(16), "openai-processing-ms": "12"}

    # -- flavor details ---------------------------------------------------------------
    def decorate_chunk(self, chunk: dict, call: ChatCall, usage: Usage | None) -> dict:
        opts = call.body.get("stream_options") or {}
        if self.flavor == "openai" and opts.get("include_obfuscation", True) is not False:
            chunk["obfuscation"] = secrets.token_urlsafe(6)  # random padding, like the real stream
        elif self.flavor == "vllm":
            for key in ("service_tier", "system_fingerprint"):
                chunk.pop(key, None)
            if opts.get("continuous_usage_stats") and usage is None and call.include_usage:
                call.streamed += sum(1 for c in chunk["choices"] if c["delta"].get("content"))
                chunk["usage"] = {"prompt_tokens": call.usage.input_tokens, "completion_tokens": call.streamed,
                                  "total_tokens": call.usage.input_tokens + call.streamed}
        elif self.flavor == "llamacpp":
            for key in ("service_tier", "system_fingerprint"):
                chunk.pop(key, None)
            if usage is not None:
                chunk["timings"] = self.timings(usage)
        return chunk

    def decorate_completion(self, body: dict, call: ChatCall) -> dict:
        if self.flavor == "llamacpp":
            body["timings"] = self.timings(call.usage)
        if self.flavor != "openai":
            body.pop("service_tier", None)
            body["usage"] = {k: v for k, v in usage_body(call.usage).items()
                             if k != "completion_tokens_details"}
        return body

    @staticmethod
    def timings(u: Usage) -> dict:
        return {"cache_n": u.cached_tokens, "prompt_n": u.input_tokens - u.cached_tokens, "prompt_ms": 5.0,
                "prompt_per_token_ms": 1.0, "prompt_per_second": 1000.0, "predicted_n": u.output_tokens,
                "predicted_ms": 10.0, "predicted_per_token_ms": 10.0 / max(u.output_tokens, 1),
                "predicted_per_second": 100.0}

