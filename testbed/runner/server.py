"""The function runner (our of-watchdog): serves one handler over HTTP/1.1 on loopback.

Stdlib only, so a replica's cold start is process spawn + handler imports, nothing else.
Protocol with the launcher: once the handler is loaded and the socket listens, one JSON
line ``{"event": "ready", "port": P, "startup_s": S}`` is printed on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO
from urllib.parse import parse_qsl, urlsplit

from testbed.runner.handler import Context, Event, Handler, call_handler, load_handler

__all__ = ["main", "serve"]

_SPAWN_ENV = "AQUATOPE_SPAWN_TS"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _make_request_handler(
    handler: Handler, context: Context, max_inflight: int, startup_s: float
) -> type[BaseHTTPRequestHandler]:
    slots = threading.BoundedSemaphore(max_inflight)
    state = {"inflight": 0, "served": 0}
    lock = threading.Lock()

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "aquatope-runner"
        sys_version = ""

        def log_message(self, format: str, *args: object) -> None:
            pass  # access logs would cost more than the requests they describe

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _health(self) -> None:
            body = json.dumps(
                {
                    "status": "ok",
                    "function": context.function,
                    "startup_s": startup_s,
                    "inflight": state["inflight"],
                    "served": state["served"],
                    "pid": os.getpid(),
                }
            ).encode()
            self._send(200, body, {"Content-Type": "application/json"})

        def _invoke(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            if url.path == "/_/health":
                self._health()
                return
            if not slots.acquire(blocking=False):
                self._send(
                    429,
                    b'{"error":"replica at its max_inflight limit"}',
                    {"Content-Type": "application/json"},
                )
                return
            with lock:
                state["inflight"] += 1
            started = time.perf_counter()
            try:
                event = Event(
                    body=body,
                    headers={k: v for k, v in self.headers.items()},
                    method=self.command,
                    query=dict(parse_qsl(url.query)),
                    path=url.path,
                )
                try:
                    response = call_handler(handler, event, context)
                    status, out, headers = response.status_code, response.body, response.headers
                except Exception as exc:  # a handler bug is a 500 for this request only
                    traceback.print_exc(file=sys.stderr)
                    status, headers = 500, {"Content-Type": "application/json"}
                    out = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
                headers = dict(headers)
                headers["X-Duration-Seconds"] = f"{time.perf_counter() - started:.6f}"
                self._send(status, out, headers)
            finally:
                with lock:
                    state["inflight"] -= 1
                    state["served"] += 1
                slots.release()

        do_POST = _invoke
        do_PUT = _invoke
        do_DELETE = _invoke
        do_PATCH = _invoke
        do_GET = _invoke

    return RequestHandler


def serve(
    handler_dir: str,
    *,
    function: str = "",
    host: str = "127.0.0.1",
    port: int = 0,
    max_inflight: int = 1,
    ready_stream: TextIO | None = None,
) -> None:
    """Load the handler, listen, announce readiness, serve until SIGTERM/SIGINT."""
    spawn_ts = float(os.environ.get(_SPAWN_ENV) or 0) or None
    t0 = time.time()
    handler = load_handler(handler_dir)
    context = Context(function=function)
    startup_s = time.time() - (spawn_ts or t0)
    server = _Server((host, port), _make_request_handler(handler, context, max_inflight, startup_s))

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stream = ready_stream or sys.stdout
    ready = {"event": "ready", "port": server.server_address[1], "startup_s": round(startup_s, 6)}
    stream.write(json.dumps(ready) + "\n")
    stream.flush()
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.runner", description="Serve one python3-http handler over HTTP."
    )
    parser.add_argument("--handler", required=True, help="directory holding handler.py")
    parser.add_argument("--function", default="", help="function name (for logs and health)")
    parser.add_argument("--host", default=os.environ.get("RUNNER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("RUNNER_PORT", "0")))
    inflight_env = os.environ.get("max_inflight", "1")  # noqa: SIM112 - of-watchdog's name
    parser.add_argument("--max-inflight", type=int, default=int(inflight_env or 1))
    args = parser.parse_args(argv)
    if args.max_inflight < 1:
        parser.error("--max-inflight must be >= 1")
    try:
        serve(
            args.handler,
            function=args.function,
            host=args.host,
            port=args.port,
            max_inflight=args.max_inflight,
        )
    except ImportError as exc:
        print(json.dumps({"event": "error", "error": str(exc)}), flush=True)
        print(f"runner: {exc}", file=sys.stderr)
        return 3
    return 0
