"""Where attempt records go: the usage log and the metrics.

The request path calls :meth:`Accountant.attempt` once per upstream attempt.
Nothing here blocks the response: metric updates are in-memory, the ledger
write is queued for a background writer, and the log line is debug-level.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from gateway.metrics import Metrics
from gateway.pricing import format_usd
from gateway.records import AttemptRecord

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
    def __init__(self, metrics: Metrics, ledger: Any) -> None:
        self.metrics = metrics
        self.ledger = ledger
        self._warned_unpriced: set[str] = set()

    def attempt(self, rec: AttemptRecord) -> None:
        self.ledger.record(rec)
        self.metrics.attempt(rec)
        if usage_log.isEnabledFor(logging.DEBUG):
            usage_log.debug(orjson.dumps(record_fields(rec)).decode())
        if rec.cost_picousd is None and rec.usage is not None and rec.deployment not in self._warned_unpriced:
            self._warned_unpriced.add(rec.deployment)
            logging.getLogger("taskgate.pricing").warning(
                "no price known for deployment %s (%s): its attempts are recorded as unpriced; set "
                "input_cost_per_token/output_cost_per_token or pricing.deployments.%s", rec.deployment,
                rec.provider, rec.deployment,
            )
