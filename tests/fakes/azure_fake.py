"""Fake Azure OpenAI, classic surface:
`/openai/deployments/{deployment}/chat/completions|embeddings?api-version=...` with `api-key`.

Azure differs from OpenAI in: error shape for auth/routing/throttling (`code` a string,
no `type`/`param`), a 404 without `api-version`, content-filter annotations (a first
stream chunk with `choices: []`, empty `id`/`model` and `prompt_filter_results`), and a
400 `content_filter` when a user message contains FORBIDDEN."""

from __future__ import annotations

import re
import uuid

from .common import Behaviour, Usage
from .openai_wire import ChatCall, ChatCompletionsFake, InvalidRequest, content_texts
from .server import Exchange

_FORBIDDEN = re.compile(r"\bFORBIDDEN\b")
_ROUTE = re.compile(r"/openai/deployments/([^/]+)/(chat/completions|embeddings)")
_SAFE = {"filtered": False, "severity": "safe"}
FILTER_OK = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": {
    **FILTER_OK, "jailbreak": {"filtered": False, "detected": False}}}]


class ContentFiltered(InvalidRequest):
    pass


class AzureFake(ChatCompletionsFake):
    model_in_body = False
    def __init__(self, name: str = "azure", api_key: str = "azure-key", deployments=("gpt-4o-mini",),
                 api_versions=None):
        super().__init__(name)
        self.api_key = api_key
        self.deployments = tuple(deployments)
        self.api_versions = tuple(api_versions) if api_versions else None

    async def handle(self, ex: Exchange) -> None:
        if not self.api_key or ex.headers.get("api-key") != self.api_key:
            await self.azure_error(ex, 401, "401", "Access denied due to invalid subscription key or wrong API "
                                   "endpoint. Make sure to provide a valid key for an active subscription and use "
                                   "a correct regional API endpoint for your resource.")
            return
        m = _ROUTE.fullmatch(ex.path)
        if m is None or ex.method != "POST" or not ex.query.get("api-version"):
            await self.azure_error(ex, 404, "404", "Resource not found")
            return
        if self.api_versions and ex.query["api-version"] not in self.api_versions:
            await self.azure_error(ex, 400, "BadRequest", "API version not supported")
            return
        deployment, op = m.groups()
        if deployment not in self.deployments:
            await self.azure_error(ex, 404, "DeploymentNotFound", "The API deployment for this resource does not "
                                   "exist. If you created the deployment within the last 5 minutes, please wait a "
                                   "moment and try again.")
            return
        if op == "embeddings":
            await self.embeddings(ex, deployment)
        else:
            await self.chat(ex, deployment)

    # -- errors -------------------------------------------------------------------------
    async def azure_error(self, ex: Exchange, status: int, code: str, message: str, headers: dict | None = None):
        await ex.send_json(status, {"error": {"code": code, "message": message}}, headers)

    async def send_invalid(self, ex: Exchange, exc: InvalidRequest) -> None:
        if not isinstance(exc, ContentFiltered):
            await super().send_invalid(ex, exc)
            return
        await ex.send_json(400, {"error": {
            "message": exc.message, "type": None, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                **FILTER_OK, "violence": {"filtered": True, "severity": "medium"},
                "jailbreak": {"filtered": False, "detected": False}}}}})

    async def send_failure(self, ex: Exchange, b: Behaviour) -> None:
        version = ex.query.get("api-version", "")
        if b.kind == "429":
            retry = b.kw.get("retry_after", 1)
            await self.azure_error(ex, 429, "429", "Requests to the ChatCompletions_Create Operation under Azure "
                                   f"OpenAI API version {version} have exceeded token rate limit of your current "
                                   f"OpenAI S0 pricing tier. Please retry after {retry} seconds.",
                                   {"retry-after": str(retry), "retry-after-ms": str(int(float(retry) * 1000))})
        elif b.kind == "503":
            await self.azure_error(ex, 503, "503", "The service is temporarily unable to process your request. "
                                   "Please try again later.")
        else:
            await self.azure_error(ex, 500, "500", "The server had an error while processing your request. "
                                   "Sorry about that!")

    # -- Azure stream / response details -------------------------------------------------
    def extra_chat_checks(self, body: dict) -> None:
        for m in body["messages"]:
            if m.get("role") == "user" and any(_FORBIDDEN.search(t) for t in content_texts(m.get("content"))):
                raise ContentFiltered("The response was filtered due to the prompt triggering Azure OpenAI's "
                                      "content management policy. Please modify your prompt and retry. To learn "
                                      "more about our content filtering policies please read our documentation: "
                                      "https://go.microsoft.com/fwlink/?linkid=2198766")

    def reply_headers(self) -> dict:
        return {"apim-request-id": str(uuid.uuid4()), "x-ms-region": "East US"}

    def prefix_chunks(self, call: ChatCall) -> list[tuple[dict, bool, int]]:
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": PROMPT_FILTER_RESULTS}
        return [(first, False, 0)]

    def decorate_choice(self, choice: dict, delta: bool = False) -> dict:
        has_text = bool(choice.get("delta", choice.get("message", {})).get("content"))
        choice["content_filter_results"] = FILTER_OK if (has_text or not delta) else {}
        return choice

    def decorate_chunk(self, chunk: dict, call: ChatCall, usage: Usage | None) -> dict:
        chunk.pop("service_tier", None)
        return chunk

    def decorate_completion(self, body: dict, call: ChatCall) -> dict:
        body.pop("service_tier", None)
        body["prompt_filter_results"] = PROMPT_FILTER_RESULTS
        return body
