"""Which task a request belongs to (pure: headers and body in, TaskRef out).

The task id is taken from the first of these that is present:

1. the ``X-Task-Id`` header (Taskgate's own);
2. ``metadata.task_id`` in the request body (OpenAI's metadata field);
3. the ``x-litellm-trace-id`` header (LiteLLM);
4. ``litellm_session_id`` in the body (LiteLLM);
5. the task of the stored response that ``previous_response_id`` continues
   (Responses API), or else of the stored response whose function call the
   request's ``function_call_output`` answers, so that a chain of responses is one task;
6. the ``x-claude-code-session-id`` header (Claude Code);
7. the ``session_id`` inside ``metadata.user_id`` (Claude Code: JSON, or ``..._session_<id>``);
8. the ``session-id`` header, then ``session_id`` (Codex CLI, current and older);
9. the ``x-session-id`` header.

With none of them, the gateway makes a one-request task (``generated=True``),
which ends with that request's outcome.
"""

from __future__ import annotations

import itertools
import os
import re

import orjson
from dataclasses import dataclass
from typing import Any, Mapping

from gateway.errors import BadRequest

_prefix = os.urandom(10).hex()  # 80 random bits per process, drawn again in a forked child
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(10).hex(), itertools.count()


os.register_at_fork(after_in_child=_reseed)


def unique_hex() -> str:
    """32 hex digits, unique across processes and restarts (like ``uuid4().hex``, without its
    per-call cost): a random prefix drawn once per process, then a counter."""
    return f"{_prefix}{next(_counter):012x}"


TASK_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TASK_TYPE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True, slots=True)
class TaskRef:
    id: str
    type: str
    generated: bool
    source: str  # where the id came from


CLAUDE_SESSION = re.compile(r"_session_([A-Za-z0-9-]{1,64})$")


def user_id_session(value: Any) -> str | None:
    """Claude Code's session inside ``metadata.user_id``: a JSON object with ``session_id``
    (current) or ``user_<hash>_account_<uuid>_session_<uuid>`` (older); anything else is no session."""
    if not isinstance(value, str):
        return None
    if value.startswith("{"):
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        session = obj.get("session_id") if isinstance(obj, dict) else None
        return session if isinstance(session, str) and TASK_ID.fullmatch(session) else None
    found = CLAUDE_SESSION.search(value)
    return found.group(1) if found else None


def identify(headers: Mapping[str, str], body: Mapping[str, Any] | None, chain: str | None = None) -> TaskRef:
    """``chain``: the task of the stored response a Responses request continues."""
    body = body or {}
    metadata: Mapping[str, Any] = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
    candidates = (
        ("X-Task-Id header", headers.get("x-task-id")),
        ("metadata.task_id", metadata.get("task_id")),
        ("x-litellm-trace-id header", headers.get("x-litellm-trace-id")),
        ("litellm_session_id", body.get("litellm_session_id")),
        ("response chain", chain),
        ("x-claude-code-session-id header", headers.get("x-claude-code-session-id")),
        ("metadata.user_id", user_id_session(metadata.get("user_id"))),
        ("session-id header", headers.get("session-id")),
        ("session_id header", headers.get("session_id")),
        ("x-session-id header", headers.get("x-session-id")),
    )
    task_type = headers.get("x-task-type") or "default"
    if not TASK_TYPE.fullmatch(task_type):
        raise BadRequest("X-Task-Type must be 1 to 64 characters of A-Za-z0-9._:-", param="X-Task-Type",
                         code="invalid_task_type")
    for source, value in candidates:
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not TASK_ID.fullmatch(value):
            raise BadRequest(f"the task id from {source} must be 1 to 128 characters of A-Za-z0-9._:-",
                             param=source.split(" ")[0], code="invalid_task_id")
        return TaskRef(value, task_type, False, source)
    return TaskRef("req-" + unique_hex(), task_type, True, "generated")
