"""``aquatope trace ...`` and ``aquatope load``: in-process where Locust is not touched,
a subprocess where it is."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from testbed.cli import cli


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_generate_show_plot(tmp_path: Path) -> None:
    out = tmp_path / "invocations_per_function_md.anon.d01.csv"
    res = _run(
        "trace",
        "generate",
        "--kind",
        "azure-like",
        "--functions",
        "50",
        "--minutes",
        "120",
        "--seed",
        "4",
        "-o",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert out.exists() and (tmp_path / "function_durations_percentiles.anon.d01.csv").exists()
    header = out.read_text().splitlines()[0].split(",")
    assert header[:4] == ["HashOwner", "HashApp", "HashFunction", "Trigger"]
    assert header[-1] == "120"
    res = _run("trace", "show", str(out), "--top", "5")
    assert res.exit_code == 0, res.output
    assert "50 functions" in res.output and "idle50" in res.output and "http" in res.output
    png = tmp_path / "t.png"
    res = _run("trace", "plot", str(out), "-o", str(png))
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["trace", "generate", "--kind", "azure-like", "--rate", "5", "-o", str(tmp_path / "x.csv")],
    )
    assert res.exit_code == 2 and "--rate" in res.output
    res = CliRunner().invoke(
        cli,
        ["trace", "generate", "--kind", "bursty", "--minutes", "0", "-o", str(tmp_path / "x.csv")],
    )
    assert res.exit_code == 2 and "--minutes" in res.output
    res = CliRunner().invoke(
        cli,
        ["trace", "generate", "--kind", "timers", "--rate", "5", "-o", str(tmp_path / "x.csv")],
    )
    assert res.exit_code == 2 and "--rate" in res.output and "once per period" in res.output


def test_generate_timers_and_poisson(tmp_path: Path) -> None:
    for kind, rate in (("timers", []), ("poisson", ["--rate", "0.5"])):
        out = tmp_path / f"{kind}.csv"
        args = ["trace", "generate", "--kind", kind, "--functions", "3", "--minutes", "600"]
        res = CliRunner().invoke(cli, [*args, *rate, "-o", str(out)])
        assert res.exit_code == 0, res.output
        total = int(res.output.split(" invocations")[0].rsplit(" ", 1)[1])
        if kind == "poisson":  # 3 functions x 600 min x 0.5 per min
            assert 800 <= total <= 1000
        else:  # one call per period of 2-10 minutes
            assert 3 * 600 // 10 <= total <= 3 * 600 // 2 + 3


def test_show_reports_broken_file_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,http,1,zz\n")
    res = CliRunner().invoke(cli, ["trace", "show", str(bad)])
    assert res.exit_code == 1
    assert "line 2, column 6" in res.output and "bad.csv" in res.output


def test_load_validates_at_the_edge(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    assert (
        _run("trace", "generate", "--kind", "bursty", "--minutes", "2", "-o", str(trace)).exit_code
        == 0
    )
    res = CliRunner().invoke(cli, ["load", "--trace", str(trace), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--workflow" in res.output
    res = CliRunner().invoke(cli, ["load", "--trace", str(trace), "--workflow", "function:x"])
    assert res.exit_code == 2 and "--output" in res.output
    res = CliRunner().invoke(
        cli, ["load", "--trace", str(trace), "--workflow", "no-such", "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 1 and "unknown workflow" in res.output
    res = CliRunner().invoke(
        cli,
        [
            "load",
            "--trace",
            str(trace),
            "--workflow",
            "function:x",
            "--duration",
            "soon",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "--duration" in res.output
    assert "locust" not in sys.modules


def _aquatope(*args: str, **kw):  # type: ignore[no-untyped-def]
    exe = Path(sys.executable).with_name("aquatope")
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "testbed.cli", *args]


def test_load_headless_end_to_end(noop_gateway: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    assert (
        _run(
            "trace",
            "generate",
            "--kind",
            "flash-crowd",
            "--minutes",
            "3",
            "--rate",
            "3000",
            "--seed",
            "2",
            "-o",
            str(trace),
        ).exit_code
        == 0
    )
    out = tmp_path / "run"
    proc = subprocess.run(
        _aquatope(
            "--gateway",
            noop_gateway,
            "load",
            "--trace",
            str(trace),
            "--workflow",
            "function:noop",
            "--duration",
            "2s",
            "-o",
            str(out),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sent" in proc.stdout and "lateness" in proc.stdout
    with (out / "requests.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert 60 <= len(rows) <= 140 and all(r["ok"] == "True" for r in rows)  # 50/s for 2 s
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True and meta["t0"] > 1.7e9
    assert meta["workflows"] == ["function:noop"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read()  # type: ignore[no-any-return]
    except OSError:
        return None


def test_web_ui_answers_and_drives_load(noop_gateway: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    assert (
        _run("trace", "generate", "--kind", "bursty", "--minutes", "5", "-o", str(trace)).exit_code
        == 0
    )
    port = _free_port()
    proc = subprocess.Popen(
        _aquatope(
            "--gateway",
            noop_gateway,
            "load",
            "--web",
            "--port",
            str(port),
            "--trace",
            str(trace),
            "--workflow",
            "function:noop",
            "--workflow",
            "social-network",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        page = None
        while page is None and time.monotonic() < deadline and proc.poll() is None:
            page = _get(base + "/")
            time.sleep(0.1)
        assert page is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert b"locust" in page.lower()
        # a user class per target, the social network's 20/40/40 mix among them
        assert b"SocialNetworkUser" in page and b"FunctionNoopUser" in page
        assert b"TraceShape" in page
        # start two users by hand through the UI's API and see requests reach the gateway
        body = b"user_count=2&spawn_rate=2&host=" + noop_gateway.encode()
        req = urllib.request.Request(
            base + "/swarm",
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["success"] is True
        stats: dict = {}
        while time.monotonic() < deadline:
            raw = _get(base + "/stats/requests")
            stats = json.loads(raw) if raw else {}
            total = next((s for s in stats.get("stats", []) if s["name"] == "Aggregated"), None)
            if total and total["num_requests"] >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no requests through the web UI: {stats}")
        assert total["num_failures"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_generate_offers_every_synthetic_kind() -> None:
    # the CLI lists the kinds by hand (importing the generators would slow every --help)
    from loadgen.traces.synthetic import KINDS
    from testbed.cli.trace import generate

    kind = next(p for p in generate.params if p.name == "kind")
    assert set(kind.type.choices) == set(KINDS)  # type: ignore[attr-defined]
