"""Where attempt records go: the usage log and the metrics.

The request path calls :meth:`Accountant.attempt` once per upstream attempt.
Nothing here blocks the response: metric updates are in-memory, the ledger
write is queued for a background writer, and the log line is debug-level.
"""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.accounting.metrics import Metrics
from gateway.accounting.pricing import format_usd
from gateway.accounting.records import AttemptRecord

usage_log = logging.getLogger("taskgate.usage")


class RecordSink(Protocol):
    """Where records are kept (the ledger); returns the record as written, for the usage log."""

    def record(self, rec: AttemptRecord) -> str: ...


access_log = logging.getLogger("taskgate.access")


def access_line(rec: AttemptRecord) -> str:
    """One line per request (its final attempt): task, model, deployment, outcome and status, cost, ms."""
    cost = "unpriced" if rec.cost_picousd is None else f"${format_usd(rec.cost_picousd)}"
    return (f"task={rec.task_id} model={rec.model} deployment={rec.deployment} outcome={rec.outcome} "
            f"status={rec.status} cost={cost} attempts={rec.attempt + 1} ms={rec.duration_s * 1000:.0f}")


class Accountant:
    def __init__(self, metrics: Metrics, ledger: RecordSink, access: bool = False) -> None:
        self.metrics = metrics
        self.ledger = ledger
        self.access = access  # `taskgate serve --access-log`
        self._warned_unpriced: set[str] = set()

    def attempt(self, rec: AttemptRecord) -> None:
        line = self.ledger.record(rec)
        self.metrics.attempt(rec)
        usage_log.debug("%s", line)
        if self.access and rec.final:
            access_log.info("%s", access_line(rec))
        if rec.cost_picousd is None and rec.usage is not None and rec.deployment not in self._warned_unpriced:
            self._warned_unpriced.add(rec.deployment)
            logging.getLogger("taskgate.pricing").warning(
                "no price known for deployment %s (%s): its attempts are recorded as unpriced; set "
                "input_cost_per_token/output_cost_per_token or pricing.deployments.%s", rec.deployment,
                rec.provider, rec.deployment,
            )
