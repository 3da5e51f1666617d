"""The gateway's client for the replica hop, against real sockets on loopback.

The servers are either aiohttp (a well-behaved replica) or raw asyncio servers that answer
what a test needs byte for byte (chunked, close-delimited, interim, malformed, a reset).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from testbed.gateway.replica_client import (
    ReplicaClient,
    ReplicaConnectError,
    ReplicaConnectionLost,
    ReplicaResponse,
    _Deadlines,
)

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def run() -> Iterator[Callable[[Awaitable[Any]], Any]]:
    with asyncio.Runner() as runner:
        yield lambda coro: runner.run(asyncio.wait_for(coro, 20))


@asynccontextmanager
async def echo_server() -> Any:
    """aiohttp answering ``<method> <path?query> <peer port> <body>`` (peer: the connection)."""

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
        body = await request.read()
        header = request.headers.get("X-Tag", "")
        text = f"{request.method} {request.path_qs} {peer} {header} {body.decode()}"
        return web.Response(text=text)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(answer: Answer) -> Any:
    """A server whose every connection is handed to ``answer`` once a request head is read."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def replies(raw: bytes, *, then: str = "hold") -> Answer:
    """An answer that reads the request head and sends ``raw`` byte for byte, then either
    holds the connection until the client closes it (``hold``) or closes it (``close``)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(raw)
        await writer.drain()
        if then == "hold":
            await reader.read()

    return answer


async def one_answer(answer: Answer, method: str = "GET", body: bytes = b"") -> ReplicaResponse:
    """One request to a server answering ``answer``, on a client of its own."""
    client = ReplicaClient(timeout_s=5)
    async with raw_server(answer) as (address, _):
        r = await client.request(address, method, "/", {}, body)
        client.close()
        return r


def test_keep_alive_reuses_one_connection_and_forwards_method_target_headers_body(
    run: Callable[[Awaitable[Any]], Any],
) -> None:
    async def scenario() -> list[str]:
        client = ReplicaClient(timeout_s=5)
        async with echo_server() as address:
            answers = []
            for method, body in (("POST", b"one"), ("PUT", b"two"), ("GET", b"")):
                r = await client.request(address, method, "/a/b?x=1&y=two", {"X-Tag": "t"}, body)
                assert r.status == 200
                answers.append(r.body.decode())
            client.close()
            return answers

    answers = run(scenario())
    peers = {a.split()[2] for a in answers}
    assert len(peers) == 1  # one connection for the three requests
    assert answers[0].startswith("POST /a/b?x=1&y=two ") and answers[0].endswith(" t one")
    assert answers[1].startswith("PUT ") and answers[1].endswith(" two")
    assert answers[2].startswith("GET ")


def test_a_path_with_unsafe_characters_is_sent_quoted(run: Callable[..., Any]) -> None:
    async def scenario() -> str:
        client = ReplicaClient(timeout_s=5)
        async with echo_server() as address:
            r = await client.request(address, "POST", "/a b/ü", {}, b"")
            return r.body.decode()

    assert run(scenario()).startswith("POST /a%20b/%C3%BC ")


def test_a_chunked_answer_is_decoded(run: Callable[..., Any]) -> None:
    answer = replies(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    assert run(one_answer(answer)).body == b"hello world"


def test_a_body_ended_by_the_close_of_the_connection_is_complete(
    run: Callable[..., Any],
) -> None:
    # no length: the close ends the body
    answer = replies(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", then="close")

    async def scenario() -> tuple[bytes, int]:
        client = ReplicaClient(timeout_s=5)
        async with raw_server(answer) as (address, _):
            r = await client.request(address, "GET", "/", {}, b"")
            return r.body, len(client._idle.get(("127.0.0.1", int(address.rsplit(":")[-1])), []))

    body, idle = run(scenario())
    assert body == b"all of it"
    assert idle == 0  # a closed connection is never kept


def test_head_ends_at_the_headers_and_its_connection_is_not_reused(
    run: Callable[..., Any],
) -> None:
    answer = replies(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")  # and no body

    async def scenario() -> tuple[int, bytes, int]:
        client = ReplicaClient(timeout_s=2)
        async with raw_server(answer) as (address, connections):
            r = await client.request(address, "HEAD", "/", {}, b"")
            r2 = await client.request(address, "HEAD", "/", {}, b"")
            assert r2.status == 200
            return r.status, r.body, len(connections)

    status, body, connections = run(scenario())
    assert (status, body) == (200, b"")
    assert connections == 2


def test_an_interim_100_continue_is_skipped_for_the_final_answer(
    run: Callable[..., Any],
) -> None:
    answer = replies(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Id: 7\r\n\r\ndone"
    )

    r = run(one_answer(answer, "POST", b"x"))
    assert (r.status, r.body) == (201, b"done")
    assert ("X-Id", "7") in r.headers


def test_connection_close_in_the_answer_is_honoured(run: Callable[..., Any]) -> None:
    # the server holds on: the client must be the one to close
    answer = replies(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    async def scenario() -> int:
        client = ReplicaClient(timeout_s=5)
        async with raw_server(answer) as (address, connections):
            for _ in range(2):
                assert (await client.request(address, "GET", "/", {}, b"")).body == b"ok"
            return len(connections)

    assert run(scenario()) == 2


def test_a_refused_connection_is_a_connect_error(run: Callable[..., Any]) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ReplicaClient(timeout_s=5)
    with pytest.raises(ReplicaConnectError, match="cannot connect") as info:
        run(client.request(f"http://127.0.0.1:{port}", "POST", "/", {}, b"x"))
    assert info.value.errno == errno.ECONNREFUSED


def test_a_replica_that_reads_and_closes_is_a_clean_loss(run: Callable[..., Any]) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)  # read it, then close without an answer

    client = ReplicaClient(timeout_s=5)

    async def scenario() -> None:
        async with raw_server(answer) as (address, _):
            await client.request(address, "POST", "/", {}, b"")

    with pytest.raises(ReplicaConnectionLost, match="closed by the replica") as info:
        run(scenario())
    assert info.value.errno == 0


def test_a_reset_keeps_its_errno_for_the_delivery_rule(run: Callable[..., Any]) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0: close answers with a reset, as the kernel does for a dead process
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    client = ReplicaClient(timeout_s=5)

    async def scenario() -> None:
        async with raw_server(answer) as (address, _):
            await client.request(address, "POST", "/", {}, b"")

    with pytest.raises(ReplicaConnectionLost) as info:
        run(scenario())
    assert info.value.errno == errno.ECONNRESET


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped(
    run: Callable[..., Any],
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await reader.read()  # never answers

    async def scenario() -> tuple[bool, int]:
        client = ReplicaClient(timeout_s=0.3)
        async with raw_server(answer) as (address, _):
            try:
                await client.request(address, "POST", "/", {}, b"")
            except TimeoutError:
                return True, sum(len(v) for v in client._idle.values())
            return False, 0

    timed_out, idle = run(scenario())
    assert timed_out and idle == 0


def test_a_malformed_answer_is_a_loss_naming_it(run: Callable[..., Any]) -> None:
    answer = replies(b"NOT HTTP AT ALL\r\n\r\n")

    client = ReplicaClient(timeout_s=5)

    async def scenario() -> None:
        async with raw_server(answer) as (address, _):
            await client.request(address, "GET", "/", {}, b"")

    with pytest.raises(ReplicaConnectionLost, match="malformed response"):
        run(scenario())


def test_an_idle_connection_the_replica_closed_is_not_used_again(
    run: Callable[..., Any],
) -> None:
    # then close the idle keep-alive connection (as a timeout would)
    answer = replies(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", then="close")

    async def scenario() -> tuple[int, int]:
        client = ReplicaClient(timeout_s=5)
        async with raw_server(answer) as (address, connections):
            assert (await client.request(address, "GET", "/", {}, b"")).body == b"ok"
            await asyncio.sleep(0.1)  # the close reaches the client
            idle = sum(len(v) for v in client._idle.values())
            assert (await client.request(address, "GET", "/", {}, b"")).body == b"ok"
            return idle, len(connections)

    idle, connections = run(scenario())
    assert idle == 0  # the closed connection left the idle list by itself
    assert connections == 2


def test_a_connection_idle_past_the_timeout_is_closed_not_reused(
    run: Callable[..., Any],
) -> None:
    async def scenario() -> set[str]:
        client = ReplicaClient(timeout_s=5, idle_timeout_s=0.2)
        async with echo_server() as address:
            first = await client.request(address, "GET", "/", {}, b"")
            await asyncio.sleep(0.3)
            second = await client.request(address, "GET", "/", {}, b"")
            client.close()
            return {first.body.decode().split()[2], second.body.decode().split()[2]}

    assert len(run(scenario())) == 2  # two different client ports: two connections


def _second_request_on_a_connection(ending: str) -> Answer:
    """Answer a connection's first request, then end it at its second: ``reset`` (a peer
    that is gone: nothing read it) or ``close`` (read, then a clean close)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_head(reader)
        if ending == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return answer


def test_a_kept_connection_reset_before_any_answer_is_retried_on_a_new_one(
    run: Callable[..., Any],
) -> None:
    async def scenario() -> tuple[bytes, int]:
        client = ReplicaClient(timeout_s=5)
        async with raw_server(_second_request_on_a_connection("reset")) as (address, conns):
            assert (await client.request(address, "POST", "/", {}, b"a")).body == b"ok"
            second = await client.request(address, "POST", "/", {}, b"b")
            client.close()
            return second.body, len(conns)

    body, connections = run(scenario())
    assert body == b"ok"  # answered on a second connection
    assert connections == 2


def test_a_kept_connection_closed_cleanly_before_the_answer_is_not_retried(
    run: Callable[..., Any],
) -> None:
    connections: list[int] = []

    async def scenario() -> None:
        client = ReplicaClient(timeout_s=5)
        async with raw_server(_second_request_on_a_connection("close")) as (address, conns):
            connections.extend(conns)
            assert (await client.request(address, "POST", "/", {}, b"a")).body == b"ok"
            try:
                await client.request(address, "POST", "/", {}, b"b")
            finally:
                connections[:] = conns

    with pytest.raises(ReplicaConnectionLost) as info:
        run(scenario())
    assert info.value.errno == 0
    assert len(connections) == 1  # the replica may have read it: never sent twice


def test_an_answered_exchange_is_never_timed_out_after_its_slot_expires(
    run: Callable[..., Any],
) -> None:
    """Time-outs are shared per 0.1-s slot: an answer in time leaves its slot, so when the
    slot's timer fires later the kept connection is untouched and serves the next request."""

    async def scenario() -> tuple[list[int], int]:
        client = ReplicaClient(timeout_s=0.2)
        async with echo_server() as address:
            peers = []
            for _ in range(3):
                r = await client.request(address, "POST", "/", {}, b"x")
                peers.append(int(r.body.split()[2]))
                await asyncio.sleep(0.35)  # past the first request's slot and its timer
            return peers, sum(len(v) for v in client._idle.values())

    peers, idle = run(scenario())
    assert len(set(peers)) == 1 and idle == 1


def test_a_slot_left_pending_by_a_closed_loop_does_not_swallow_time_outs_in_the_next() -> None:
    """Tests drive one client from several loops in turn: a slot whose timer belonged to a
    closed loop must not keep a later loop's exchange (same slot) from timing out."""

    class Exchange:
        timed_out = 0

        def _time_out(self) -> None:
            self.timed_out += 1

    deadlines = _Deadlines(resolution_s=0.1)
    first, second = Exchange(), Exchange()
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        deadline = loop.time() + 0.15  # this loop closes before its timer is due
        deadlines.add(loop, first, deadline)  # type: ignore[arg-type]

    async def wait_in_the_next_loop() -> None:
        deadlines.add(asyncio.get_running_loop(), second, deadline)  # type: ignore[arg-type]
        await asyncio.sleep(0.4)

    with asyncio.Runner() as runner:
        runner.run(wait_in_the_next_loop())
    assert second.timed_out == 1 and first.timed_out == 0
