"""Table-driven tests for the Bedrock adapter. No network: requests are checked
as bytes, signatures are verified the way a server does, and streams are built
from event-stream frames encoded here."""

from __future__ import annotations

import base64
import hmac
import struct
import subprocess
import sys
import zlib
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from providers.base import (
    AwsSigV4,
    Deployment,
    FailureReason,
    Secret,
    Unsupported,
    UpstreamRequest,
    Usage,
)
from providers.bedrock import BedrockAdapter, sign
from tests import wire

ADAPTER = BedrockAdapter()
MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
QUOTED = "anthropic.claude-3-5-sonnet-20241022-v2%3A0"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN"


def make_dep(**overrides: Any) -> Deployment:
    fields: dict[str, Any] = {
        "id": "claude#0",
        "model_name": "claude-sonnet",
        "kind": "bedrock",
        "model": MODEL,
    }
    aws = {"region": "us-east-1", "access_key_id": Secret("AKIDEXAMPLE"), "secret_access_key": Secret(SECRET)}
    for name in ("aws_region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        if name in overrides:
            aws[name.removeprefix("aws_").replace("region_name", "region")] = overrides.pop(name)
    fields.update(overrides)
    return Deployment(**fields, credentials=AwsSigV4(**aws))


DEP = make_dep()
USER = {"role": "user", "content": "hi"}


def request_json(body: dict[str, Any], dep: Deployment = DEP, stream: bool = False) -> dict[str, Any]:
    return orjson.loads(wire.chat_request(ADAPTER, dep, body, stream).body)


# --- request translation ------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}
TOOL_SPEC = {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": {"type": "object"}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CALL_2 = {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"messages": [{"role": "system", "content": "be brief"}, USER]},
            {"system": [{"text": "be brief"}], "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            id="system",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                    {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                ]
            },
            {
                "system": [{"text": "a"}, {"text": "b"}],
                "messages": [{"role": "user", "content": [{"text": "one"}, {"text": "two"}]}],
            },
            id="multi-part-text",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                            {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
                        ],
                    }
                ]
            },
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"text": "what is this?"},
                            {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                            {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
                        ],
                    }
                ]
            },
            id="image-data-url",
        ),
        pytest.param(
            {"messages": [USER, {"role": "user", "content": "again"}, {"role": "assistant", "content": ""}]},
            {"messages": [{"role": "user", "content": [{"text": "hi"}, {"text": "again"}]}]},
            id="merge-same-role-and-drop-blank",
        ),
        pytest.param(
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": None, "tool_calls": [CALL, CALL_2]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
                    {"role": "user", "content": "thanks"},
                ],
                "tools": [TOOL],
            },
            {
                "messages": [
                    {"role": "user", "content": [{"text": "hi"}]},
                    {
                        "role": "assistant",
                        "content": [
                            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
                            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {}}},
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
                            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "rainy"}]}},
                            {"text": "thanks"},
                        ],
                    },
                ],
                "toolConfig": {"tools": [TOOL_SPEC]},
            },
            id="tool-results-merge",
        ),
        pytest.param(
            {"messages": [USER], "max_tokens": 10, "temperature": 0, "top_p": 0.5, "stop": "END"},
            {
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "inferenceConfig": {"maxTokens": 10, "temperature": 0, "topP": 0.5, "stopSequences": ["END"]},
            },
            id="inference-stop-str",
        ),
        pytest.param(
            {"messages": [USER], "max_tokens": 10, "max_completion_tokens": 20, "stop": ["a", "b"]},
            {
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "inferenceConfig": {"maxTokens": 20, "stopSequences": ["a", "b"]},
            },
            id="max-completion-tokens-stop-list",
        ),
        pytest.param(
            {
                "model": "claude-sonnet",
                "messages": [USER],
                "metadata": {"task": "t1"},
                "user": "u",
                "store": False,
                "stream": True,
                "stream_options": {"include_usage": True},
                "n": 1,
                "seed": 7,
                "response_format": {"type": "text"},
                "logprobs": False,
                "parallel_tool_calls": True,
                "frequency_penalty": 0.1,
                "presence_penalty": 0.2,
                "stop": None,
            },
            {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            id="openai-only-fields-dropped",
        ),
    ],
)
def test_chat_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert request_json(body) == expected


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        pytest.param(None, {"tools": [TOOL_SPEC]}, id="absent"),
        pytest.param("auto", {"tools": [TOOL_SPEC], "toolChoice": {"auto": {}}}, id="auto"),
        pytest.param("required", {"tools": [TOOL_SPEC], "toolChoice": {"any": {}}}, id="required"),
        pytest.param(
            {"type": "function", "function": {"name": "get_weather"}},
            {"tools": [TOOL_SPEC], "toolChoice": {"tool": {"name": "get_weather"}}},
            id="named",
        ),
        pytest.param("none", None, id="none-drops-tool-config"),
    ],
)
def test_tool_choice(tool_choice: Any, expected: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"messages": [USER], "tools": [TOOL]}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    assert request_json(body).get("toolConfig") == expected


def test_tool_without_parameters_gets_an_empty_object_schema() -> None:
    body = {"messages": [USER], "tools": [{"type": "function", "function": {"name": "now"}}]}
    spec = request_json(body)["toolConfig"]["tools"][0]["toolSpec"]
    assert spec == {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(
    ("body", "feature"),
    [
        pytest.param({"messages": [USER], "n": 2}, "n > 1", id="n>1"),
        pytest.param({"messages": [USER], "logprobs": True}, "logprobs", id="logprobs"),
        pytest.param({"messages": [USER], "top_logprobs": 2}, "logprobs", id="top_logprobs"),
        pytest.param({"messages": []}, "without messages", id="no-messages"),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]},
            "data URLs",
            id="http-image",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]},
            "image/bmp",
            id="bmp-image",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "input_audio",
            id="audio-part",
        ),
        pytest.param({"messages": [{"role": "function", "content": "x"}]}, "role", id="function-role"),
        pytest.param({"messages": [USER], "functions": [{"name": "f"}]}, "functions", id="legacy-functions"),
        pytest.param({"messages": [USER], "tools": [{"type": "web_search"}]}, "web_search", id="tool-type"),
        pytest.param({"messages": [USER], "tools": [TOOL], "tool_choice": {"type": "custom"}}, "tool_choice", id="bad-choice"),
        pytest.param(
            {"messages": [USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
            "without tools",
            id="tool-history-without-tools",
        ),
        pytest.param(
            {
                "messages": [USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}],
                "tools": [TOOL],
                "tool_choice": "none",
            },
            "tool_choice 'none'",
            id="tool-history-with-choice-none",
        ),
        pytest.param(
            {"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}], "tools": [TOOL]},
            "JSON object",
            id="non-object-arguments",
        ),
    ],
)
def test_chat_request_unsupported(body: dict[str, Any], feature: str) -> None:
    with pytest.raises(Unsupported) as info:
        wire.chat_request(ADAPTER, DEP, body, False)
    assert info.value.kind == "bedrock"
    assert feature in info.value.feature


@pytest.mark.parametrize(
    ("dep", "stream", "url", "accept"),
    [
        pytest.param(DEP, False, f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{QUOTED}/converse", "application/json", id="default"),
        pytest.param(
            make_dep(model="us.anthropic.claude-3-5-haiku-20241022-v1:0", aws_region_name="eu-west-3"),
            True,
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
            "application/vnd.amazon.eventstream",
            id="stream-profile",
        ),
        pytest.param(make_dep(api_base="http://fake:9000/"), False, f"http://fake:9000/model/{QUOTED}/converse", "application/json", id="api-base"),
        pytest.param(
            make_dep(api_base="http://ignored", litellm_params=MappingProxyType({"aws_bedrock_runtime_endpoint": "https://vpce.example/br"})),
            True,
            f"https://vpce.example/br/model/{QUOTED}/converse-stream",
            "application/vnd.amazon.eventstream",
            id="runtime-endpoint",
        ),
    ],
)
def test_chat_request_url_and_headers(dep: Deployment, stream: bool, url: str, accept: str) -> None:
    req = wire.chat_request(ADAPTER, dep, {"messages": [USER]}, stream)
    assert (req.method, req.url) == ("POST", url)
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Accept"] == accept
    assert req.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")


def test_missing_credentials_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="claude#0") as info:
        wire.chat_request(ADAPTER, make_dep(aws_secret_access_key=None), {"messages": [USER]}, False)
    assert not isinstance(info.value, Unsupported)


# --- SigV4, verified the way a server (or our fake) does it -------------------


def server_verifies(req: UpstreamRequest, secrets: dict[str, str], region: str) -> bool:
    """Recompute the signature from the raw path and the SignedHeaders only."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(req.url)  # .path is the raw, still-quoted path
    received = {k.lower(): v for k, v in req.headers.items()}
    received["host"] = parts.netloc  # what the HTTP client sends
    fields = dict(item.split("=", 1) for item in received["authorization"].split(" ", 1)[1].split(", "))
    access_key, date, scope_region, service, terminator = fields["Credential"].split("/")
    token = received.get("x-amz-security-token")
    rebuilt = AWSRequest(
        method=req.method,
        url=f"{parts.scheme}://{parts.netloc}{parts.path}",
        headers={name: received[name] for name in fields["SignedHeaders"].split(";")},
        data=req.body,
    )
    rebuilt.context["timestamp"] = received["x-amz-date"]
    auth = SigV4Auth(Credentials(access_key, secrets[access_key], token), service, scope_region)
    canonical = auth.canonical_request(rebuilt)
    assert "%253A" in canonical or "%3A" not in parts.path  # AWS double-encodes the path
    expected = auth.signature(auth.string_to_sign(rebuilt, canonical), rebuilt)
    return (
        hmac.compare_digest(expected, fields["Signature"])
        and (date, scope_region, service, terminator) == (received["x-amz-date"][:8], region, "bedrock", "aws4_request")
    )


SECRETS = {"AKIDEXAMPLE": SECRET}


@pytest.mark.parametrize(
    ("dep", "stream"),
    [
        pytest.param(DEP, False, id="converse"),
        pytest.param(DEP, True, id="converse-stream"),
        pytest.param(make_dep(aws_session_token=Secret(TOKEN)), False, id="session-token"),
        pytest.param(make_dep(model="us.anthropic.claude-3-7-sonnet-20250219-v1:0", aws_region_name="us-west-2"), True, id="profile"),
        pytest.param(make_dep(api_base="http://127.0.0.1:8787"), True, id="fake-with-port"),
    ],
)
def test_signature_verifies_like_a_server(dep: Deployment, stream: bool) -> None:
    req = wire.chat_request(ADAPTER, dep, {"messages": [USER], "max_tokens": 5}, stream)
    signed = req.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"content-type", "host", "x-amz-date"} <= set(signed)
    assert ("x-amz-security-token" in signed) == (dep.credentials.session_token is not None)
    assert "%3A" in urlsplit(req.url).path
    assert server_verifies(req, SECRETS, dep.credentials.region or "")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: UpstreamRequest(r.method, r.url, r.headers, r.body + b" "), id="body"),
        pytest.param(lambda r: UpstreamRequest(r.method, r.url.replace("%3A", ":"), r.headers, r.body), id="unquoted-path"),
        pytest.param(lambda r: UpstreamRequest(r.method, r.url, {**r.headers, "Content-Type": "text/plain"}, r.body), id="signed-header"),
    ],
)
def test_tampered_request_fails_verification(tamper: Any) -> None:
    req = wire.chat_request(ADAPTER, DEP, {"messages": [USER]}, False)
    assert server_verifies(req, SECRETS, "us-east-1")
    assert not server_verifies(tamper(req), SECRETS, "us-east-1")


def test_sign_matches_botocore_add_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
    dep = make_dep(aws_session_token=Secret(TOKEN))
    url = f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{QUOTED}/converse"
    headers = sign(dep, url, {"Content-Type": "application/json"}, b"{}", now)
    assert headers["X-Amz-Date"] == "20261123T120000Z"
    assert "Credential=AKIDEXAMPLE/20261123/us-east-1/bedrock/aws4_request" in headers["Authorization"]

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    reference = AWSRequest(method="POST", url=url, headers={"Content-Type": "application/json"}, data=b"{}")
    botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", SECRET, TOKEN), "bedrock", "us-east-1").add_auth(reference)
    assert headers == dict(reference.headers.items())


def test_import_does_not_load_botocore() -> None:
    code = "import sys, providers.bedrock; assert 'botocore' not in sys.modules, 'botocore imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


# --- response translation -----------------------------------------------------


def converse_response(content: list[dict[str, Any]], stop: str = "end_turn", **usage: int) -> bytes:
    return orjson.dumps(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15, **usage},
            "metrics": {"latencyMs": 100},
        }
    )


def test_chat_response_text() -> None:
    raw, usage = wire.chat_response(ADAPTER, DEP, converse_response([{"text": "Hello"}, {"text": " world"}]))
    body = orjson.loads(raw)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "claude-sonnet"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "finish_reason": "stop", "logprobs": None}
    ]
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
    assert usage == Usage(input_tokens=10, output_tokens=5)


def test_chat_response_tool_use() -> None:
    content = [
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
    ]
    message = orjson.loads(wire.chat_response(ADAPTER, DEP, converse_response(content, "tool_use"))[0])["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["content"] == "Let me check."
    calls = message["message"]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [("tooluse_1", "function", "get_weather"), ("tooluse_2", "function", "now")]
    assert [orjson.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {}]
    assert all(isinstance(c["function"]["arguments"], str) for c in calls)


def test_chat_response_tool_only_has_null_content() -> None:
    content = [{"toolUse": {"toolUseId": "t", "name": "now", "input": {}}}]
    assert orjson.loads(wire.chat_response(ADAPTER, DEP, converse_response(content, "tool_use"))[0])["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_chat_response_stop_reason(stop: str, finish: str) -> None:
    raw, _ = wire.chat_response(ADAPTER, DEP, converse_response([{"text": "x"}], stop))
    assert orjson.loads(raw)["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(
    ("usage", "expected", "prompt", "cached"),
    [
        pytest.param({}, Usage(10, 5, 0, 0), 10, 0, id="no-cache"),
        pytest.param({"cacheReadInputTokens": 100}, Usage(110, 5, 100, 0), 110, 100, id="read"),
        pytest.param({"cacheWriteInputTokens": 40}, Usage(50, 5, 0, 40), 50, 0, id="write"),
        pytest.param({"cacheReadInputTokens": 100, "cacheWriteInputTokens": 40}, Usage(150, 5, 100, 40), 150, 100, id="both"),
    ],
)
def test_chat_response_cache_usage_normalised(usage: dict[str, int], expected: Usage, prompt: int, cached: int) -> None:
    raw, got = wire.chat_response(ADAPTER, DEP, converse_response([{"text": "x"}], **usage))
    assert got == expected
    body = orjson.loads(raw)["usage"]
    assert (body["prompt_tokens"], body["completion_tokens"], body["total_tokens"]) == (prompt, 5, prompt + 5)
    assert body["prompt_tokens_details"] == {"cached_tokens": cached}


# --- stream decoding --------------------------------------------------------------


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, body: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps({**body, "p": "abcdefgh"}))


def exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, orjson.dumps({"message": message}))


METADATA = event("metadata", {"usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15, "cacheReadInputTokens": 8}, "metrics": {"latencyMs": 9}})
TEXT_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("messageStop", {"stopReason": "end_turn"}),
    METADATA,
]
TOOL_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking"}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "get_weather"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ' "Paris"}'}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu_2", "name": "now"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "tool_use"}),
    METADATA,
]
STREAM_USAGE = Usage(input_tokens=20, output_tokens=3, cached_input_tokens=8)


def decode(frames: list[bytes], include_usage: bool, step: int | None = None) -> tuple[Any, list[dict[str, Any]]]:
    decoder = wire.ClientStream(ADAPTER, DEP, include_usage)
    data = b"".join(frames)
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    events = [e for piece in pieces for e in decoder.feed(piece)] + decoder.close()
    for e in events:
        assert e.startswith(b"data: ") and e.endswith(b"\n\n")
    return decoder, [orjson.loads(e[6:]) for e in events]


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]]


@pytest.mark.parametrize("step", [None, 1, 7], ids=["whole", "byte-by-byte", "7-bytes"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_text(step: int | None, include_usage: bool) -> None:
    decoder, chunks = decode(TEXT_STREAM, include_usage, step)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({}, "stop"),
    ]
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "claude-sonnet" for c in chunks)
    assert chunks[0]["id"].startswith("chatcmpl-")
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23, "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 0}}
    else:
        assert all("usage" not in c and c["choices"] for c in chunks)
    assert decoder.usage == STREAM_USAGE
    assert decoder.done and decoder.failure is None
    assert decoder.text == ["Hel", "lo"]


@pytest.mark.parametrize("step", [None, 1], ids=["whole", "byte-by-byte"])
def test_stream_tool_calls(step: int | None) -> None:
    decoder, chunks = decode(TOOL_STREAM, False, step)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Checking"}, None),
        ({"tool_calls": [{"index": 0, "id": "tu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}, None),
        ({"tool_calls": [{"index": 1, "id": "tu_2", "type": "function", "function": {"name": "now", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}, None),
        ({}, "tool_calls"),
    ]
    assert decoder.text == ["Checking", '{"city":', ' "Paris"}', "{}"]
    assert decoder.done and decoder.usage == STREAM_USAGE


@pytest.mark.parametrize(
    ("frames", "done"),
    [
        pytest.param(TEXT_STREAM[:-1], True, id="message-stop-without-metadata"),
        pytest.param(TEXT_STREAM[:3], False, id="cut-before-message-stop"),
        pytest.param([*TEXT_STREAM[:-1], METADATA[:20]], True, id="cut-inside-metadata"),
    ],
)
def test_stream_end(frames: list[bytes], done: bool) -> None:
    decoder, _ = decode(frames, True)
    assert decoder.done is done
    assert decoder.usage is None and decoder.failure is None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("throttlingException", FailureReason.RATE_LIMITED),
        ("modelStreamErrorException", FailureReason.SERVER_ERROR),
        ("internalServerException", FailureReason.SERVER_ERROR),
        ("serviceUnavailableException", FailureReason.UNAVAILABLE),
        ("validationException", FailureReason.BAD_REQUEST),
        ("somethingNewException", FailureReason.SERVER_ERROR),
    ],
)
@pytest.mark.parametrize("step", [None, 1], ids=["whole", "byte-by-byte"])
def test_stream_exception_frame(kind: str, reason: FailureReason, step: int | None) -> None:
    frames = [*TEXT_STREAM[:2], exception(kind, "slow down"), *TEXT_STREAM[2:]]
    decoder, chunks = decode(frames, True, step)
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, None), ({"content": "Hel"}, None)]
    assert decoder.failure is not None
    assert (decoder.failure.reason, decoder.failure.message, decoder.failure.code) == (reason, "slow down", kind)
    assert not decoder.done and decoder.usage is None


def test_stream_bad_crc_is_a_protocol_failure() -> None:
    corrupt = bytearray(TEXT_STREAM[1])
    corrupt[-5] ^= 0xFF  # a payload byte: the message CRC no longer matches
    decoder, chunks = decode([TEXT_STREAM[0], bytes(corrupt), *TEXT_STREAM[2:]], False)
    assert deltas(chunks) == []  # messageStart carries nothing to send: the stream can still fail over
    assert decoder.failure is not None and decoder.failure.reason is FailureReason.PROTOCOL
    assert not decoder.done


# --- embeddings -------------------------------------------------------------------

TITAN = make_dep(model="amazon.titan-embed-text-v2:0", model_name="titan-embed")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"input": "hello"}, {"inputText": "hello"}, id="string"),
        pytest.param({"input": ["hello"], "dimensions": 256, "encoding_format": "base64"}, {"inputText": "hello", "dimensions": 256}, id="list-of-one"),
    ],
)
def test_embeddings_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    req = wire.embeddings_request(ADAPTER, TITAN, body)
    assert req.url == "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert orjson.loads(req.body) == expected
    assert server_verifies(req, SECRETS, "us-east-1")


@pytest.mark.parametrize(
    ("dep", "body", "feature"),
    [
        pytest.param(TITAN, {"input": ["a", "b"]}, "more than one embedding input per request", id="two-inputs"),
        pytest.param(TITAN, {"input": [1, 2, 3]}, "other than a string", id="token-ids"),
        pytest.param(DEP, {"input": "a"}, "titan-embed", id="not-titan"),
    ],
)
def test_embeddings_unsupported(dep: Deployment, body: dict[str, Any], feature: str) -> None:
    with pytest.raises(Unsupported) as info:
        wire.embeddings_request(ADAPTER, dep, body)
    assert feature in info.value.feature


VECTOR = [0.5, -1.25, 3.0, 0.1]
TITAN_RESPONSE = orjson.dumps({"embedding": VECTOR, "inputTextTokenCount": 4})


def test_embeddings_response_float() -> None:
    raw, usage = wire.embeddings_response(ADAPTER, TITAN, TITAN_RESPONSE)
    assert orjson.loads(raw) == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": VECTOR}],
        "model": "titan-embed",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    assert usage == Usage(input_tokens=4)


def test_embeddings_response_base64() -> None:
    raw, usage = wire.embeddings_response(ADAPTER, TITAN, TITAN_RESPONSE, encoding_format="base64")
    encoded = orjson.loads(raw)["data"][0]["embedding"]
    decoded = struct.unpack("<4f", base64.b64decode(encoded))
    assert decoded == pytest.approx(VECTOR, rel=1e-6)
    assert usage.input_tokens == 4


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "reason"),
    [
        (429, "ThrottlingException", FailureReason.RATE_LIMITED),
        (400, "ValidationException", FailureReason.BAD_REQUEST),
        (403, "AccessDeniedException", FailureReason.AUTH),
        (403, "UnrecognizedClientException", FailureReason.AUTH),
        (403, "InvalidSignatureException", FailureReason.AUTH),
        (404, "ResourceNotFoundException", FailureReason.NOT_FOUND),
        (408, "ModelTimeoutException", FailureReason.TIMEOUT),
        (424, "ModelErrorException", FailureReason.SERVER_ERROR),
        (500, "InternalServerException", FailureReason.SERVER_ERROR),
        (503, "ServiceUnavailableException", FailureReason.UNAVAILABLE),
        (429, "ModelNotReadyException", FailureReason.UNAVAILABLE),
        (400, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", FailureReason.RATE_LIMITED),
        (418, "", FailureReason.BAD_REQUEST),
        (502, "", FailureReason.SERVER_ERROR),
        (503, "SomethingNew", FailureReason.UNAVAILABLE),
    ],
)
def test_error_table(status: int, error_type: str, reason: FailureReason) -> None:
    headers = {"x-amzn-errortype": error_type} if error_type else {}
    failure = ADAPTER.error(DEP, status, headers, b'{"message": "went wrong"}')
    assert (failure.reason, failure.status, failure.message) == (reason, status, "went wrong")
    assert failure.code == (error_type.split(":")[0] or None)


@pytest.mark.parametrize(
    ("headers", "raw", "message", "retry_after"),
    [
        pytest.param({"x-amzn-errortype": "ThrottlingException", "retry-after": "3"}, b'{"message": "Too many requests"}', "Too many requests", 3.0, id="retry-after"),
        pytest.param({"x-amzn-errortype": "AccessDeniedException"}, b'{"Message": "denied"}', "denied", None, id="capital-Message"),
        pytest.param({}, b"<html>bad gateway</html>", "<html>bad gateway</html>", None, id="not-json"),
        pytest.param({"x-amzn-errortype": "ValidationException"}, b"", "ValidationException", None, id="empty-body"),
    ],
)
def test_error_message_and_retry_after(headers: dict[str, str], raw: bytes, message: str, retry_after: float | None) -> None:
    failure = ADAPTER.error(DEP, 429, headers, raw)
    assert (failure.message, failure.retry_after) == (message, retry_after)


def test_error_message_never_carries_credentials() -> None:
    dep = make_dep(aws_session_token=Secret(TOKEN))
    echoed = (
        "The request signature we calculated does not match the signature you provided."
        "\n\nThe Canonical String for this request should have been\n'POST\n/model/x/converse\n\n"
        f"x-amz-security-token:{TOKEN}\n'"
    )
    for message in (echoed, f"bad key {SECRET} for AKIDEXAMPLE token {TOKEN}"):
        failure = ADAPTER.error(dep, 403, {"x-amzn-errortype": "InvalidSignatureException"}, orjson.dumps({"message": message}))
        assert failure.reason is FailureReason.AUTH
        assert TOKEN not in failure.message and SECRET not in failure.message and "AKIDEXAMPLE" not in failure.message
