"""The upstream HTTP/1.1 client (gateway/upstream/h1.py, pool.py, transport.py) against raw
asyncio servers that say exactly what each test needs: framing (length, chunked, to the
end of the connection), gzip, keep-alive reuse and its refusal after anything odd, the
size limits, the three timeouts, and TLS with SNI and verification.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import time
from typing import Any, Awaitable, Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.snapshot import Timeouts
from gateway.upstream.pool import Pool
from gateway.upstream.transport import H1Transport, UpstreamCallError
from providers.base import UPSTREAM_TOO_LARGE, FailureReason, UpstreamRequest

T = Timeouts(connect=2.0, total=5.0)
TS = Timeouts(connect=2.0, total=5.0, read=2.0)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """A raw HTTP/1.1 server on 127.0.0.1: ``handler`` answers each request it reads."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "Server":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                await self.handler(reader, writer, self)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self, path: str = "/v1/chat/completions", scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


def req(url: str, **headers: str) -> UpstreamRequest:
    return UpstreamRequest("POST", url, {"Content-Type": "application/json", **headers}, b'{"x":1}')


def answer(body: bytes, *extra: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), b"".join(extra), body))
    return handle


def chunked(parts: list[bytes], pause: float = 0.0, end: bool = True) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(pause)
        if end:
            writer.write(b"0\r\n\r\n")
        else:
            writer.transport.abort()
    return handle


async def failure(coro: Awaitable[Any]) -> Any:
    with pytest.raises(UpstreamCallError) as info:
        await coro
    return info.value.failure


async def test_a_whole_answer_and_the_connection_is_reused() -> None:
    client = H1Transport()
    async with Server(answer(b'{"ok":true}', b"X-Up: 1\r\n")) as srv:
        for _ in range(3):
            reply = await client.send(req(srv.url(), Authorization="Bearer k"), T)
            assert (reply.status, reply.body, reply.headers["x-up"]) == (200, b'{"ok":true}', "1")
        assert srv.connections == 1
        head = srv.requests[0].decode()
        assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
        for line in (f"Host: 127.0.0.1:{srv.port}", "Accept: */*", "Accept-Encoding: gzip, deflate",
                     "Authorization: Bearer k", "Content-Type: application/json", "Content-Length: 7"):
            assert f"\r\n{line}\r\n" in head
        assert head.endswith('\r\n\r\n{"x":1}') and "User-Agent" not in head
    await client.close()


async def test_the_url_path_and_query_go_out_as_the_adapter_encoded_them() -> None:
    client = H1Transport()
    async with Server(answer(b"{}")) as srv:
        await client.send(req(srv.url("/model/a%3Ab/converse?api-version=1")), T)
        assert srv.requests[0].startswith(b"POST /model/a%3Ab/converse?api-version=1 HTTP/1.1\r\n")
    await client.close()


async def test_a_header_with_a_line_break_is_never_sent() -> None:
    client = H1Transport()
    async with Server(answer(b"{}")) as srv:
        got = await failure(client.send(req(srv.url(), **{"X-A": "1\r\nX-Injected: 1"}), T))
        assert got.reason == FailureReason.UNAVAILABLE and srv.requests == []
    await client.close()


async def test_connection_close_and_a_body_to_the_end_of_the_connection() -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        await writer.drain()
        writer.close()

    client = H1Transport()
    async with Server(until_eof) as srv:
        for _ in range(2):
            assert (await client.send(req(srv.url()), T)).body == b"part one, part two"
        assert srv.connections == 2
    await client.close()


async def test_gzip_answers_are_decoded() -> None:
    client = H1Transport()
    async with Server(answer(gzip.compress(b'{"ok":1}' * 100), b"Content-Encoding: gzip\r\n")) as srv:
        assert (await client.send(req(srv.url()), T)).body == b'{"ok":1}' * 100
    await client.close()


async def test_a_stream_arrives_as_it_is_sent_and_its_connection_is_reused() -> None:
    client = H1Transport()
    async with Server(chunked([b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"], pause=0.2)) as srv:
        for _ in range(2):
            seen: list[tuple[float, bytes]] = []
            t0 = time.monotonic()
            async with client.stream(req(srv.url()), TS) as up:
                assert up.status == 200 and up.headers["content-type"] == "text/event-stream"
                async for data in up.chunks():
                    seen.append((time.monotonic() - t0, data))
            assert b"".join(d for _, d in seen) == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
            assert seen[0][1] == b"data: 1\n\n" and seen[0][0] < 0.15  # not held back until the end
        assert srv.connections == 1
    await client.close()


async def test_a_stream_left_unfinished_or_cut_closes_its_connection() -> None:
    client = H1Transport()
    async with Server(chunked([b"data: 1\n\n", b"data: 2\n\n"], pause=0.1)) as srv:
        async with client.stream(req(srv.url()), TS) as up:
            async for _ in up.chunks():
                break
        async with client.stream(req(srv.url()), TS) as up:
            assert [d async for d in up.chunks()] == [b"data: 1\n\n", b"data: 2\n\n"]
        assert srv.connections == 2
    async with Server(chunked([b"data: 1\n\n"], end=False)) as srv:
        async with client.stream(req(srv.url()), TS) as up:
            got = await failure(_drain(up))
        assert got.reason == FailureReason.SERVER_ERROR and "closed the connection mid-response" in got.message
    await client.close()


async def _drain(up: Any) -> None:
    async for _ in up.chunks():
        pass


async def test_a_stream_read_slowly_stops_reading_the_socket() -> None:
    sent = 0
    piece = b"data: " + b"x" * 65530 + b"\n"

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(512):  # 32 MiB
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            sent += len(piece)
        writer.write(b"0\r\n\r\n")

    client = H1Transport()
    async with Server(big) as srv:
        async with client.stream(req(srv.url()), TS) as up:
            await asyncio.sleep(0.5)  # a slow client: the upstream is held back, memory stays bounded
            assert sent < 24 * 2**20
            got = 0
            async for data in up.chunks():
                got += len(data)
            assert got == sent == 512 * len(piece)
    await client.close()


async def test_a_body_cut_short_fails_and_the_next_call_gets_a_new_connection() -> None:
    calls = 0

    async def cut_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            await writer.drain()
            writer.transport.abort()
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    client = H1Transport()
    async with Server(cut_once) as srv:
        got = await failure(client.send(req(srv.url()), T))
        assert (got.reason, got.status) == (FailureReason.SERVER_ERROR, 0)
        assert (await client.send(req(srv.url()), T)).body == b"{}"
        assert srv.connections == 2
    await client.close()


async def test_bytes_after_the_answer_mean_the_connection_is_not_reused() -> None:
    client = H1Transport()
    two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-N: 1\r\n\r\n{}HTTP/1.1 201 OK\r\nX-N: 2\r\nContent-Length: 0\r\n\r\n"
    async with Server(lambda reader, writer, server: _write(writer, two)) as srv:
        for _ in range(2):
            reply = await client.send(req(srv.url()), T)
            assert (reply.status, reply.headers["x-n"], reply.body) == (200, "1", b"{}")
            await asyncio.sleep(0.05)
        assert srv.connections == 2
    await client.close()


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)


async def test_the_size_limits_cut_and_never_reuse_the_connection() -> None:
    client = H1Transport(lambda: (1000, 50))
    async with Server(answer(b"x" * 2000)) as srv:
        got = await failure(client.send(req(srv.url()), T))
        assert got.code == UPSTREAM_TOO_LARGE and "a body of 2000 bytes" in got.message
    async with Server(chunked([b"y" * 600, b"y" * 600])) as srv:
        got = await failure(client.send(req(srv.url()), T))
        assert got.code == UPSTREAM_TOO_LARGE and "a body over the limit" in got.message
        async with client.stream(req(srv.url()), TS) as up:
            got = await failure(_drain(up))
        assert got.code == UPSTREAM_TOO_LARGE and "one stream line" in got.message
        assert srv.connections == 2
    async with Server(answer(gzip.compress(b"z" * 5000), b"Content-Encoding: gzip\r\n")) as srv:
        got = await failure(client.send(req(srv.url()), T))  # a small compressed body decodes past the limit
        assert got.code == UPSTREAM_TOO_LARGE
    await client.close()


async def test_headers_that_never_end_are_refused() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(2000):
            writer.write(b"X-Pad: " + b"p" * 100 + b"\r\n")
            await writer.drain()

    client = H1Transport()
    async with Server(endless) as srv:
        got = await failure(client.send(req(srv.url()), T))
        assert got.reason == FailureReason.SERVER_ERROR
    await client.close()


async def test_timeouts_total_first_byte_and_between_chunks() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await asyncio.sleep(3)

    client = H1Transport()
    async with Server(hang) as srv:
        t0 = time.monotonic()
        got = await failure(client.send(req(srv.url()), Timeouts(connect=1.0, total=0.3)))
        assert got.reason == FailureReason.TIMEOUT and 0.25 < time.monotonic() - t0 < 1.5
        t0 = time.monotonic()
        got = await failure(client.stream(req(srv.url()), Timeouts(connect=1.0, total=5.0, read=0.3)).__aenter__())
        assert got.reason == FailureReason.TIMEOUT and time.monotonic() - t0 < 1.5
    async with Server(chunked([b"data: 1\n\n", b"data: 2\n\n"], pause=0.25)) as srv:  # each gap within the bound
        async with client.stream(req(srv.url()), Timeouts(connect=1.0, total=5.0, read=0.4)) as up:
            assert len([d async for d in up.chunks()]) == 2
    async with Server(chunked([b"data: 1\n\n", b"data: 2\n\n"], pause=1.0)) as srv:
        async with client.stream(req(srv.url()), Timeouts(connect=1.0, total=5.0, read=0.3)) as up:
            got = await failure(_drain(up))
        assert got.reason == FailureReason.TIMEOUT
    await client.close()


async def test_nothing_listening_is_unavailable() -> None:
    async with Server(answer(b"")) as srv:
        port = srv.port
    got = await failure(H1Transport().send(req(f"http://127.0.0.1:{port}/v1/x"), T))
    assert got.reason == FailureReason.UNAVAILABLE and got.message.startswith(f"cannot connect to http://127.0.0.1:{port}")


def _tls_pair(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for ``name`` signed by a fresh CA, and a client context trusting that CA."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("test CA", ca_key, "test CA", ca_key, True)
    leaf = cert(name, leaf_key, "test CA", ca_key, False)
    pem = serialization.Encoding.PEM
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    import tempfile
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as f:
        f.write(leaf.public_bytes(pem) + leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
        f.flush()
        server.load_cert_chain(f.name)
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


async def test_tls_with_sni_and_verification() -> None:
    server_ctx, client_ctx = _tls_pair("localhost")
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)
    async with Server(answer(b'{"tls":1}'), tls=server_ctx) as srv:
        client = H1Transport(pool=Pool(client_ctx))
        for _ in range(2):
            assert (await client.send(req(srv.url(scheme="https", host="localhost")), T)).body == b'{"tls":1}'
        assert names == ["localhost"] and srv.connections == 1
        await client.close()
        # the default context (the system's CAs) does not trust this CA: no request is sent
        got = await failure(H1Transport().send(req(srv.url(scheme="https", host="localhost")), T))
        assert got.reason == FailureReason.UNAVAILABLE and "cannot connect" in got.message
        # a name the certificate does not cover fails verification too
        got = await failure(H1Transport(pool=Pool(client_ctx)).send(req(srv.url(scheme="https")), T))
        assert got.reason == FailureReason.UNAVAILABLE
        assert len(srv.requests) == 2


def test_under_uvloop() -> None:
    import uvloop

    async def main() -> None:
        await test_a_whole_answer_and_the_connection_is_reused()
        await test_a_stream_arrives_as_it_is_sent_and_its_connection_is_reused()
        await test_timeouts_total_first_byte_and_between_chunks()

    uvloop.run(main())
