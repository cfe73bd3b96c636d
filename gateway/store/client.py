"""The store client: one Redis, or a Redis Cluster.

``store.url`` is ``redis://`` / ``rediss://`` / ``unix://`` for one server (the
embedded default included), or ``redis+cluster://host:port`` (``rediss+cluster://``
with TLS) for a Redis Cluster, given any one of its nodes. Every ledger key carries
its tenant as a hash tag (gateway/ledger/keys.py), so each script touches one slot.
Short timeouts: the store must never hang a request.
"""

from __future__ import annotations

from typing import Union

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

Store = Union[aioredis.Redis, RedisCluster]
_CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


def is_cluster_url(url: str) -> bool:
    return any(url.startswith(scheme) for scheme in _CLUSTER_SCHEMES)


def connect(url: str) -> Store:
    for scheme, plain in _CLUSTER_SCHEMES.items():
        if url.startswith(scheme):
            return RedisCluster.from_url(plain + url[len(scheme):], socket_connect_timeout=2, socket_timeout=2,
                                         decode_responses=False)
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=0,
                                   decode_responses=False)


def cancel_requested() -> bool:
    """True when the running task was asked to stop. A background loop checks this after each store
    call: a client library that swallows a cancellation mid-call must not keep the loop alive."""
    import asyncio

    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
