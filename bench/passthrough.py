#!/usr/bin/env python3
"""The floor: a bare ASGI pass-through (uvicorn + httptools + uvloop, 1 worker,
no access log) forwarding the body bytes to UPSTREAM with one pooled aiohttp
ClientSession. Nothing else: no parsing, no auth, no logging.

    python bench/passthrough.py --port 18001 --upstream http://127.0.0.1:18000
"""
import argparse
import os

import aiohttp
import uvicorn

UPSTREAM = os.environ.get("PASSTHROUGH_UPSTREAM", "http://127.0.0.1:18000")
HOP = {b"host", b"content-length", b"connection", b"transfer-encoding", b"keep-alive"}
session = None


async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
                    auto_decompress=False, skip_auto_headers=("User-Agent",))
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in HOP]
    url = UPSTREAM + scope["raw_path"].decode("latin-1") + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    async with session.request(scope["method"], url, data=body or None, headers=headers) as resp:
        out = [(k, v) for k, v in resp.raw_headers if k.lower() not in HOP]
        if resp.content_type == "text/event-stream":
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            data = await resp.read()
            out.append((b"content-length", str(len(data)).encode()))
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18001)
    ap.add_argument("--upstream", default=UPSTREAM)
    a = ap.parse_args()
    UPSTREAM = a.upstream.rstrip("/")
    uvicorn.run(app, host=a.host, port=a.port, loop="uvloop", http="httptools", workers=1,
                access_log=False, log_level="warning", lifespan="on")
