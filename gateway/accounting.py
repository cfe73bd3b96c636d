"""Where attempt records go: the usage log and the metrics.

The request path calls :meth:`Accountant.attempt` once per upstream attempt and
:meth:`Accountant.request_done` once per client request. Nothing here blocks
the response: metric updates are in-memory and the log line is written by the
logging handler.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from gateway.metrics import Metrics
from gateway.pricing import format_usd
from gateway.records import AttemptRecord
from gateway.tasks import TaskRef

usage_log = logging.getLogger("taskgate.usage")


def record_fields(rec: AttemptRecord) -> dict[str, Any]:
    u = rec.usage
    return {
        "request_id": rec.request_id,
        "attempt": rec.attempt,
        "task_id": rec.task_id,
        "task_type": rec.task_type,
        "tenant": rec.tenant,
        "operation": rec.operation,
        "model": rec.model,
        "deployment": rec.deployment,
        "provider": rec.provider,
        "outcome": rec.outcome,
        "status": rec.status,
        "error_reason": rec.error_reason,
        "input_tokens": u.input_tokens if u else 0,
        "output_tokens": u.output_tokens if u else 0,
        "cached_input_tokens": u.cached_input_tokens if u else 0,
        "reasoning_tokens": u.reasoning_tokens if u else 0,
        "usage_source": rec.usage_source,
        "cost_usd": None if rec.cost_picousd is None else format_usd(rec.cost_picousd),
        "duration_s": round(rec.duration_s, 6),
        "ttft_s": None if rec.ttft_s is None else round(rec.ttft_s, 6),
        "final": rec.final,
    }


class Accountant:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def attempt(self, rec: AttemptRecord) -> None:
        self.metrics.attempt(rec)
        if usage_log.isEnabledFor(logging.INFO):
            usage_log.info(orjson.dumps(record_fields(rec)).decode())
        if rec.cost_picousd is None and rec.usage is not None:
            logging.getLogger("taskgate.pricing").warning(
                "no price known for deployment %s (%s); the attempt is recorded as unpriced",
                rec.deployment, rec.provider,
            )

    def request_done(self, task: TaskRef, succeeded: bool, cost_picousd: int) -> None:
        """A client request ended. A generated (one-request) task ends with it."""
        if task.generated:
            self.metrics.task_ended(task.type, "succeeded" if succeeded else "failed", cost_picousd)
