"""The hand-written part of ``/openapi.json``: the hot-path endpoints (plain ASGI, unknown to
FastAPI), the error shapes, the headers and the security schemes (pure data).

Request bodies follow OpenAI's and Anthropic's own schemas closely enough to be useful, and stay
open (``additionalProperties``) where the gateway forwards fields it does not act on.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
SSE = "text/event-stream"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


OPEN: dict[str, Any] = {"type": "object", "additionalProperties": True}

ERRORS: dict[str, Any] = {
    "OpenAIError": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "description": "OpenAI's error shape: every endpoint but /v1/messages*.",
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"], "additionalProperties": False,
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
    },
    "AnthropicError": {
        "type": "object", "required": ["type", "error"], "additionalProperties": True,
        "description": "Anthropic's error shape: /v1/messages and /v1/messages/count_tokens.",
        "properties": {"type": {"const": "error"}, "error": {
            "type": "object", "required": ["type", "message"], "additionalProperties": True,
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}},
    },
}

MESSAGE = {"type": "object", "required": ["role"], "additionalProperties": True, "properties": {
    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
    "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": OPEN}, {"type": "null"}]},
    "name": {"type": "string"}, "tool_call_id": {"type": "string"}, "tool_calls": {"type": "array", "items": OPEN}}}

SCHEMAS: dict[str, Any] = {
    **ERRORS,
    "ChatCompletionRequest": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": True,
        "description": "OpenAI's Chat Completions request; fields the gateway does not act on are forwarded.",
        "properties": {
            "model": {"type": "string", "description": "A public model name (GET /v1/models)."},
            "messages": {"type": "array", "items": MESSAGE},
            "stream": {"type": "boolean"},
            "stream_options": {"type": ["object", "null"], "additionalProperties": True,
                               "properties": {"include_usage": {"type": "boolean"}}},
            "max_tokens": {"type": ["integer", "null"], "minimum": 1},
            "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
            "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 128},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "tools": {"type": "array", "items": OPEN},
            "tool_choice": {"anyOf": [{"type": "string"}, OPEN]},
            "metadata": {"type": "object", "additionalProperties": True,
                         "properties": {"task_id": {"type": "string"}}},
            "user": {"type": "string"},
        }},
    "ChatCompletion": {"type": "object", "required": ["id", "object", "choices"], "additionalProperties": True,
                       "properties": {"id": {"type": "string"}, "object": {"const": "chat.completion"},
                                      "model": {"type": "string"}, "choices": {"type": "array", "items": OPEN},
                                      "usage": OPEN}},
    "EmbeddingsRequest": {
        "type": "object", "required": ["model", "input"], "additionalProperties": True,
        "properties": {"model": {"type": "string"},
                       "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                                           {"type": "array", "items": {"type": "integer"}},
                                           {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}]},
                       "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                       "dimensions": {"type": "integer", "minimum": 1}, "user": {"type": "string"}}},
    "Embeddings": {"type": "object", "required": ["object", "data"], "additionalProperties": True,
                   "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": OPEN},
                                  "model": {"type": "string"}, "usage": OPEN}},
    "ResponsesRequest": {
        "type": "object", "required": ["model"], "additionalProperties": True,
        "description": "OpenAI's Responses request.",
        "properties": {"model": {"type": "string"},
                       "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": OPEN}]},
                       "instructions": {"type": ["string", "null"]},
                       "previous_response_id": {"type": ["string", "null"]},
                       "store": {"type": "boolean"}, "stream": {"type": "boolean"},
                       "max_output_tokens": {"type": ["integer", "null"], "minimum": 1},
                       "tools": {"type": "array", "items": OPEN}, "metadata": OPEN}},
    "Response": {"type": "object", "required": ["id", "object"], "additionalProperties": True,
                 "properties": {"id": {"type": "string"}, "object": {"const": "response"},
                                "status": {"type": "string"}, "output": {"type": "array", "items": OPEN},
                                "usage": OPEN}},
    "ResponseDeleted": {"type": "object", "required": ["id", "object", "deleted"],
                        "properties": {"id": {"type": "string"}, "object": {"const": "response"},
                                       "deleted": {"const": True}}},
    "MessagesRequest": {
        "type": "object", "required": ["model", "messages", "max_tokens"], "additionalProperties": True,
        "description": "Anthropic's Messages request.",
        "properties": {"model": {"type": "string"},
                       "messages": {"type": "array", "items": {
                           "type": "object", "required": ["role", "content"], "additionalProperties": True,
                           "properties": {"role": {"type": "string", "enum": ["user", "assistant"]},
                                          "content": {"anyOf": [{"type": "string"},
                                                                {"type": "array", "items": OPEN}]}}}},
                       "max_tokens": {"type": "integer", "minimum": 1},
                       "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": OPEN}]},
                       "stream": {"type": "boolean"}, "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                       "tools": {"type": "array", "items": OPEN}, "metadata": OPEN}},
    "CountTokensRequest": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": True,
        "properties": {"model": {"type": "string"}, "messages": {"type": "array", "items": OPEN},
                       "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": OPEN}]},
                       "tools": {"type": "array", "items": OPEN}}},
    "Message": {"type": "object", "required": ["id", "type", "role", "content"], "additionalProperties": True,
                "properties": {"id": {"type": "string"}, "type": {"const": "message"},
                               "role": {"const": "assistant"}, "content": {"type": "array", "items": OPEN},
                               "usage": OPEN}},
    "TokenCount": {"type": "object", "required": ["input_tokens"],
                   "properties": {"input_tokens": {"type": "integer", "minimum": 0}}},
    "RouteExplanation": {"type": "object", "required": ["task_id", "considered", "deployments"],
                         "additionalProperties": True,
                         "properties": {"task_id": {"type": "string"}, "considered": {"type": "array", "items": OPEN},
                                        "deployments": OPEN}},
    "Health": {"type": "object", "required": ["status"], "additionalProperties": True,
               "properties": {"status": {"type": "string"}}},
}

HEADER_PARAMS: dict[str, Any] = {
    "TaskId": {"name": "X-Task-Id", "in": "header", "required": False,
               "description": "The task this request belongs to (else derived, see docs/CONTRACT-EXTENSIONS.md).",
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}},
    "TaskType": {"name": "X-Task-Type", "in": "header", "required": False,
                 "description": "The kind of job, e.g. ticket-triage.",
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}},
    "DataClass": {"name": "X-Data-Class", "in": "header", "required": False,
                  "description": "The data classification compliance policy acts on (config: compliance).",
                  "schema": {"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"}},
    "TaskBudget": {"name": "X-Task-Budget-USD", "in": "header", "required": False,
                   "description": "The task's budget in USD, a decimal number.",
                   "schema": {"type": "string", "pattern": "^[0-9]{1,6}(\\.[0-9]{1,6})?$"}},
}

RESPONSE_HEADERS: dict[str, Any] = {
    "X-Task-Id": {"description": "The request's task (always sent).", "schema": {"type": "string"}},
    "X-Request-Cost-USD": {"description": "What this request cost (non-streaming responses).",
                           "schema": {"type": "string"}},
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "Authorization: Bearer <key> (when auth is configured)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
               "description": "Anthropic's clients send the key as x-api-key"},
}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {}]  # {}: no auth configured


def _ok(schema: str, *, stream: bool = False, headers: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": ref(schema)}}
    if stream:
        content[SSE] = {"schema": {"type": "string"}}
    out: dict[str, Any] = {"description": "OK", "content": content}
    if headers:
        out["headers"] = RESPONSE_HEADERS
    return out


def _post(op_id: str, summary: str, request: str, ok: str, *, stream: bool = False,
          tags: tuple[str, ...] = ("proxy",)) -> dict[str, Any]:
    params = [{"$ref": f"#/components/parameters/{name}"} for name in HEADER_PARAMS]
    return {"post": {"operationId": op_id, "summary": summary, "tags": list(tags), "parameters": params,
                     "requestBody": {"required": True, "content": {JSON: {"schema": ref(request)}}},
                     "responses": {"200": _ok(ok, stream=stream)}}}


RESPONSE_ID = {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[^/]+$"}}

HOT_PATHS: dict[str, Any] = {
    "/v1/chat/completions": _post("createChatCompletion", "OpenAI Chat Completions (streamed or not)",
                                  "ChatCompletionRequest", "ChatCompletion", stream=True),
    "/v1/embeddings": _post("createEmbeddings", "OpenAI Embeddings", "EmbeddingsRequest", "Embeddings"),
    "/v1/responses": _post("createResponse", "OpenAI Responses (streamed or not)", "ResponsesRequest", "Response",
                           stream=True),
    "/v1/responses/{response_id}": {
        "get": {"operationId": "getResponse", "summary": "A stored response (the caller's tenant only)",
                "tags": ["proxy"], "parameters": [RESPONSE_ID], "responses": {"200": _ok("Response", headers=False)}},
        "delete": {"operationId": "deleteResponse", "summary": "Delete a stored response", "tags": ["proxy"],
                   "parameters": [RESPONSE_ID], "responses": {"200": _ok("ResponseDeleted", headers=False)}},
    },
    "/v1/messages": _post("createMessage", "Anthropic Messages (streamed or not)", "MessagesRequest", "Message",
                          stream=True, tags=("proxy", "anthropic")),
    "/v1/messages/count_tokens": {"post": {
        "operationId": "countMessageTokens", "summary": "Anthropic's token count (an estimate)",
        "tags": ["proxy", "anthropic"],
        "requestBody": {"required": True, "content": {JSON: {"schema": ref("CountTokensRequest")}}},
        "responses": {"200": _ok("TokenCount", headers=False)}}},
    "/v1/route/explain": _post("explainRoute", "Which deployment a chat request would go to, and why; sends nothing",
                               "ChatCompletionRequest", "RouteExplanation", tags=("routing",)),
    "/healthz": {"get": {"operationId": "healthz", "summary": "The process is up", "tags": ["health"],
                         "security": [], "responses": {"200": _ok("Health", headers=False)}}},
    "/readyz": {"get": {"operationId": "readyz", "summary": "The store answers and the config is loaded",
                        "tags": ["health"], "security": [],
                        "responses": {"200": _ok("Health", headers=False),
                                      "503": {"description": "Not ready, or draining",
                                              "content": {JSON: {"schema": ref("Health")}}}}}},
    "/ui": {"get": {"operationId": "ui", "summary": "The cost page (an admin key, or a browser that signs in)",
                    "tags": ["ui"], "responses": {"200": {"description": "HTML",
                                                          "content": {"text/html": {"schema": {"type": "string"}}}}}}},
}
ANTHROPIC_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
METRICS = {"description": "Prometheus text (server.metrics_auth: an admin key is needed)",
           "content": {"text/plain": {"schema": {"type": "string"}}}}
