"""Fake Gemini API: Google AI Studio (``x-goog-api-key``) or Vertex AI (a service account's Bearer token).

Strict like the real service:
- AI Studio: ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``;
  Vertex AI: ``POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:...``
  for the configured project and location only. Any other path is a 404.
- AI Studio needs the key (403 without one, 400 for a wrong one); Vertex AI needs a token that
  google-auth made from the test service account (a JWT signed with its key, cloud-platform scope): 401.
- The body: unknown fields, an empty ``contents``, a role other than user/model, a part that is not
  exactly one of text/inlineData/functionCall/functionResponse, a functionResponse without an object
  ``response``, an unknown ``generationConfig`` field: 400 INVALID_ARGUMENT, as Google words it.
- Answers ``reply_words(name)`` (or a functionCall of the first declared function when tools are
  given and the last turn is not a functionResponse) with ``usageMetadata``: ``promptTokenCount``
  (words of every text part, plus ``cached_tokens``, which it includes), ``candidatesTokenCount``,
  ``thoughtsTokenCount`` (``thoughts_tokens``, apart from the candidates), ``cachedContentTokenCount``.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from .common import TOOL_ARGUMENTS, BaseFake, Event, Usage, count_words, reply_words, stream_pieces
from .google_sa import check_token
from .server import Exchange

BODY_FIELDS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
               "cachedContent", "labels"}
GENERATION_FIELDS = {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "seed", "candidateCount",
                     "responseMimeType", "responseSchema", "responseJsonSchema", "presencePenalty",
                     "frequencyPenalty", "thinkingConfig", "responseLogprobs", "logprobs"}
PART_KINDS = {"text", "inlineData", "functionCall", "functionResponse", "fileData"}
_AI_STUDIO = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$")
_VERTEX = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):"
                     r"(generateContent|streamGenerateContent)$")


class Invalid(Exception):
    pass


class GeminiFake(BaseFake):
    def __init__(self, name: str = "gemini", api_key: str | None = "gemini-key", vertex: bool = False,
                 project: str = "test-project", location: str = "us-central1") -> None:
        super().__init__(name)
        self.api_key = api_key
        self.vertex = vertex
        self.project = project
        self.location = location
        self.thoughts_tokens = 0

    async def send_error(self, ex: Exchange, code: int, status: str, message: str, reason: str | None = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message, "status": status}
        if reason:  # as Google sends it: the ErrorInfo detail names the real cause
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                                 "domain": "googleapis.com"}]
        await ex.send_json(code, {"error": error})

    async def handle(self, ex: Exchange) -> None:
        model, op = self.route(ex)
        if model is None:
            await self.send_error(ex, 404, "NOT_FOUND", f"The requested URL {ex.path} was not found on this server.")
            return
        denied = self.denied(ex)
        if denied is not None:
            await self.send_error(ex, *denied)
            return
        stream = op == "streamGenerateContent"
        if stream and ex.query.get("alt") != "sse":
            await self.send_error(ex, 400, "INVALID_ARGUMENT", "this fake answers streams only with alt=sse")
            return
        try:
            body = self.validate(ex)
        except Invalid as exc:
            await self.send_error(ex, 400, "INVALID_ARGUMENT", str(exc))
            return
        behaviour = self.next_behaviour()
        if behaviour is not None and behaviour.kind in ("429", "500", "503"):
            status = {"429": "RESOURCE_EXHAUSTED", "500": "INTERNAL", "503": "UNAVAILABLE"}[behaviour.kind]
            await self.send_error(ex, int(behaviour.kind), status, f"fake {status.lower()}")
            return
        await (self.stream(ex, body, model) if stream else self.answer(ex, body, model))

    def route(self, ex: Exchange) -> tuple[str | None, str | None]:
        if ex.method != "POST":
            return None, None
        if self.vertex:
            found = _VERTEX.match(ex.path)
            if found and (found.group(1), found.group(2)) == (self.project, self.location):
                return found.group(3), found.group(4)
            return None, None
        studio = _AI_STUDIO.match(ex.path)
        return (studio.group(1), studio.group(2)) if studio else (None, None)

    def denied(self, ex: Exchange) -> tuple[int, str, str, str] | None:
        if self.vertex:
            auth = ex.headers.get("authorization", "")
            why = check_token(auth[7:]) if auth.startswith("Bearer ") else "no Bearer token"
            return None if why is None else (401, "UNAUTHENTICATED",
                                              f"Request had invalid authentication credentials: {why}",
                                              "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        key = ex.headers.get("x-goog-api-key") or ex.query.get("key")
        if not key:
            return 403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without " \
                                             "established identity). Please use API Key or other form of API consumer identity to call this API.", ""
        if key != self.api_key:
            return 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
        return None

    def validate(self, ex: Exchange) -> dict[str, Any]:
        body = ex.json
        if not isinstance(body, dict):
            raise Invalid("Invalid JSON payload received.")
        for key in body:
            if key not in BODY_FIELDS:
                raise Invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise Invalid("* GenerateContentRequest.contents: contents is not specified")
        for i, content in enumerate(contents):
            if content.get("role") not in ("user", "model"):
                raise Invalid(f"Please use a valid role: user, model. (contents[{i}])")
            self.check_parts(content.get("parts"), f"contents[{i}]")
        if "systemInstruction" in body:
            self.check_parts((body["systemInstruction"] or {}).get("parts"), "systemInstruction")
        for key in body.get("generationConfig") or {}:
            if key not in GENERATION_FIELDS:
                raise Invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'generation_config\': '
                              "Cannot find field.")
        for tool in body.get("tools") or []:
            for decl in tool.get("functionDeclarations") or []:
                if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$", str(decl.get("name", ""))):
                    raise Invalid("* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid "
                                  "function name.")
        return body

    @staticmethod
    def check_parts(parts: Any, where: str) -> None:
        if not isinstance(parts, list) or not parts:
            raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
        for part in parts:
            kinds = PART_KINDS.intersection(part) if isinstance(part, dict) else set()
            if len(kinds) != 1:
                raise Invalid(f"* GenerateContentRequest.{where}: a part must hold exactly one of {sorted(PART_KINDS)}")
            response = part.get("functionResponse")
            if response is not None and (not response.get("name") or not isinstance(response.get("response"), dict)):
                raise Invalid(f"* GenerateContentRequest.{where}: functionResponse needs a name and a response object")

    # -- answers ---------------------------------------------------------------------
    def usage(self, body: dict[str, Any], output: int) -> tuple[Usage, dict[str, Any]]:
        words = sum(count_words(p.get("text")) for c in body["contents"] for p in c["parts"])
        words += sum(count_words(p.get("text")) for p in (body.get("systemInstruction") or {}).get("parts", []))
        usage = self.usage_for(words + int(self.cached_tokens), output + self.thoughts_tokens)
        meta: dict[str, Any] = {"promptTokenCount": usage.input_tokens, "candidatesTokenCount": output,
                                "totalTokenCount": usage.input_tokens + output + self.thoughts_tokens}
        if self.thoughts_tokens:
            meta["thoughtsTokenCount"] = self.thoughts_tokens
        if usage.cached_tokens:
            meta["cachedContentTokenCount"] = usage.cached_tokens
        return usage, meta

    def call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        declared = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
        last = body["contents"][-1]["parts"]
        if not declared or mode == "NONE" or any("functionResponse" in p for p in last):
            return None
        return {"name": declared[0]["name"], "args": TOOL_ARGUMENTS}

    async def answer(self, ex: Exchange, body: dict[str, Any], model: str) -> None:
        call = self.call(body)
        parts: list[dict[str, Any]] = [{"functionCall": call}] if call else [{"text": " ".join(reply_words(self.name))}]
        usage, meta = self.usage(body, 9 if call else len(reply_words(self.name)))
        self.bill(usage)
        await ex.send_json(200, {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": meta, "modelVersion": model, "responseId": secrets.token_urlsafe(12)})

    async def stream(self, ex: Exchange, body: dict[str, Any], model: str) -> None:
        call = self.call(body)
        pieces = [] if call else stream_pieces(self.name)
        usage, meta = self.usage(body, 9 if call else len(pieces))
        events = []
        for piece in pieces:
            chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}],
                     "usageMetadata": {"promptTokenCount": usage.input_tokens}, "modelVersion": model}
            events.append(Event(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n", content=True, tokens=1))
        last_parts = [{"functionCall": call}] if call else [{"text": ""}]
        final = {"candidates": [{"content": {"role": "model", "parts": last_parts}, "finishReason": "STOP",
                                 "index": 0}], "usageMetadata": meta, "modelVersion": model}
        events.append(Event(b"data: " + orjson.dumps(final) + b"\r\n\r\n", content=bool(call), tokens=9 if call else 0))
        await ex.start(200, "text/event-stream")
        await self.run_stream(ex, events, usage, None, None)
