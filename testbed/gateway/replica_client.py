"""The gateway's HTTP/1.1 client for the hop to a replica: keep-alive, one write per request.

A general-purpose client (aiohttp's) builds a request object, a URL object, a timer and a
stream per call; on this hop the gateway knows everything up front (one body in memory, one
address, headers already filtered), so a request is one ``transport.write`` and the answer
is parsed by ``httptools`` (llhttp, the parser behind Node.js and uvicorn) as it arrives.
Same-run figures are in ``bench/gateway_overhead.py``.

Failures keep the distinctions the gateway's delivery rules rely on:

* :class:`ReplicaConnectError`: no connection, so nothing was sent (retry elsewhere);
* :class:`ReplicaConnectionLost`: the connection dropped before the answer was complete;
  ``errno`` is ``ECONNRESET`` / ``EPIPE`` when the kernel reset it (the replica's socket
  closed with the request unread) and 0 on a clean close;
* :class:`TimeoutError`: no complete answer within ``timeout_s`` (checked every 0.1 s).

Connections are reused per address while the replica keeps them open (last used first),
closed after ``idle_timeout_s`` unused, and never reused after a failure or a
``Connection: close``. A kept connection that is reset before any byte of the answer
(its peer is gone: a replica replaced at the same address, whose network namespace vanished
without a word to the gateway) is retried once on a new connection; a clean close is not
(the replica may have read the request and died of it).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

__all__ = [
    "ReplicaClient",
    "ReplicaConnectError",
    "ReplicaConnectionLost",
    "ReplicaResponse",
]

_SAFE_TARGET = "/?&=:@!$'()*+,;%~[]"  # characters kept as they are in the request target
# a target made only of characters quote() keeps (unreserved and _SAFE_TARGET) goes as it is
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9_.\-~/?&=:@!$'()*+,;%\[\]]*").fullmatch
_RESET = (errno.ECONNRESET, errno.EPIPE)  # the peer's socket closed with our request unread


@dataclass(frozen=True)
class ReplicaResponse:
    """A replica's complete answer."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class ReplicaConnectError(ConnectionError):
    """No connection to the replica could be made: the request was not sent."""


class ReplicaConnectionLost(ConnectionError):
    """The connection closed before the answer was complete (``errno`` 0: a clean close)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self, key: tuple[str, int], on_close: Callable[[_Connection], None]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._on_close = on_close
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[ReplicaResponse] | None = None
        self._head = False
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._sized = False  # a Content-Length or chunked body: its end is in the stream
        self._headers_done = False
        self.reusable = True
        self.answered = False  # any byte received in this exchange

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport: TCP

    def data_received(self, data: bytes) -> None:
        self.answered = True
        if self._waiter is None:  # bytes nobody asked for: the stream cannot be trusted
            self._abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ReplicaConnectionLost(0, f"malformed response from the replica: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_close(self)
        if self._waiter is None or self._waiter.done():
            return
        if exc is None and self._headers_done and not self._sized and not self._head:
            self._complete()  # a body delimited by the close of the connection
            return
        code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "closed by the replica"
        self._fail(ReplicaConnectionLost(code, f"connection lost ({reason})"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1")
        lowered = key.lower()
        if lowered == "content-length" or (
            lowered == "transfer-encoding" and b"chunked" in value.lower()
        ):
            self._sized = True
        self._headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._head:  # no body follows, whatever Content-Length says
            self.reusable = False  # the parser expects one: this connection is done
            self._complete()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue): the answer follows
            self._headers, self._body, self._sized, self._headers_done = [], [], False, False
            return
        if not self._parser.should_keep_alive() or status == 101:
            self.reusable = False
        self._complete()

    # -- the exchange
    async def exchange(
        self, request: bytes, *, head: bool, deadline: float, deadlines: _Deadlines
    ) -> ReplicaResponse:
        """Send ``request`` and wait for the whole answer until ``deadline`` (loop time)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[ReplicaResponse] = loop.create_future()
        self._waiter = waiter
        self.answered = False
        self._head = head
        self._headers, self._body, self._sized, self._headers_done = [], [], False, False
        self.transport.write(request)
        slot = deadlines.add(loop, self, deadline)
        try:
            return await waiter
        finally:
            deadlines.discard(self, slot)
            self._waiter = None

    def _time_out(self) -> None:
        self._fail(TimeoutError("no complete answer from the replica in time"))

    def _complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            status = self._parser.get_status_code()
            self._waiter.set_result(ReplicaResponse(status, self._headers, b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._abort()

    def _abort(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()


class _Deadlines:
    """Time-outs of the exchanges in flight: one loop timer per slot, not one per request.

    A timer per request (``asyncio.timeout``, ``call_at``) costs the hot path a handle and a
    heap push; here an exchange joins the set of its slot (its deadline rounded up to
    ``resolution_s``) and only the first exchange of a slot schedules a timer. A time-out
    fires up to ``resolution_s`` late.
    """

    def __init__(self, resolution_s: float = 0.1) -> None:
        self.resolution_s = resolution_s
        self._slots: dict[int, set[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, loop: asyncio.AbstractEventLoop, conn: _Connection, deadline: float) -> int:
        if loop is not self._loop:  # timers of another (closed) loop will never fire
            self._loop, self._slots = loop, {}
        slot = math.ceil(deadline / self.resolution_s)
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            loop.call_at(slot * self.resolution_s, self._expire, slot)
        members.add(conn)
        return slot

    def discard(self, conn: _Connection, slot: int) -> None:
        members = self._slots.get(slot)
        if members is not None:
            members.discard(conn)

    def _expire(self, slot: int) -> None:
        for conn in self._slots.pop(slot, ()):
            conn._time_out()


@functools.lru_cache(maxsize=1024)
def _endpoint(address: str) -> tuple[str, int, str]:
    """``http://host:port`` as (host, port, netloc), parsed once per address."""
    parts = urlsplit(address)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"replica address needs a host and a port: {address!r}")
    return parts.hostname, parts.port, parts.netloc


class ReplicaClient:
    """Keep-alive HTTP/1.1 requests to replicas (see the module docstring).

    Args:
        timeout_s: the most a request may take, connecting included.
        idle_timeout_s: an unused connection is closed after this long.
    """

    def __init__(self, *, timeout_s: float, idle_timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._deadlines = _Deadlines()

    async def request(
        self,
        address: str,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> ReplicaResponse:
        """Send one request to ``address`` (``http://host:port``) and read the whole answer.

        ``target`` is the path with its query; ``headers`` must leave out the hop-by-hop
        ones (``Host`` and ``Content-Length`` are set here).

        Raises:
            ReplicaConnectError: no connection (nothing sent).
            ReplicaConnectionLost: the connection dropped before the answer was complete.
            TimeoutError: no complete answer within ``timeout_s``.
        """
        host, port, netloc = _endpoint(address)
        key = (host, port)
        method = method.upper()
        if not _PLAIN_TARGET(target):
            target = quote(target, safe=_SAFE_TARGET)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        request = head + body if body else head
        head_only = method == "HEAD"
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        conn = self._reuse(key)
        try:
            if conn is not None:
                try:
                    response = await conn.exchange(
                        request, head=head_only, deadline=deadline, deadlines=self._deadlines
                    )
                except ReplicaConnectionLost as exc:
                    if exc.errno not in _RESET or conn.answered:
                        raise
                    # a kept connection whose peer is gone (a replica replaced at the
                    # same address): the reset says nothing read it; send on a new one
                    conn._abort()
                    conn = None
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(key)
                response = await conn.exchange(
                    request, head=head_only, deadline=deadline, deadlines=self._deadlines
                )
        except BaseException:
            if conn is not None:
                conn._abort()
            raise
        if conn.reusable and not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
        else:
            conn._abort()
        return response

    def _reuse(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_timeout_s:
                return conn
            conn._abort()
        self._idle.pop(key, None)
        return None

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await loop.create_connection(
                lambda: _Connection(key, self._forget), *key
            )
        except OSError as exc:
            raise ReplicaConnectError(
                exc.errno or errno.ECONNREFUSED, f"cannot connect to {key[0]}:{key[1]}: {exc}"
            ) from exc
        return conn

    def _forget(self, conn: _Connection) -> None:
        """A connection closed: out of the idle list (a gone replica leaves nothing behind)."""
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    def close(self) -> None:
        """Close every idle connection (requests in flight finish on their own)."""
        for conn in [c for idle in self._idle.values() for c in idle]:
            conn._abort()
        self._idle.clear()
