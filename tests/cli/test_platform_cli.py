"""The platform CLI end to end: `up` starts a real gateway, `down` leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.cli import cli
from tests.helpers import wait_until


def _stack(tmp_path: Path, handler_dirs: dict[str, Path]) -> Path:
    stack = tmp_path / "stack.yml"
    stack.write_text(
        "version: 1.0\n"
        "provider: {name: openfaas, gateway: http://127.0.0.1:8080}\n"
        "functions:\n"
        f"  echo:\n    lang: python3-http\n    handler: {handler_dirs['echo']}\n"
        "    image: aquatope/echo:latest\n"
        "    limits: {cpu: '1', memory: 128M}\n"
        f"  burn:\n    lang: python3-http\n    handler: {handler_dirs['burn']}\n"
        "    environment: {max_inflight: 2}\n"
        "    labels: {com.openfaas.scale.min: '1'}\n"
    )
    return stack


def _aquatope(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_up_invoke_scale_limits_down(tmp_path: Path, handler_dirs: dict[str, Path]) -> None:
    home = tmp_path / "home"
    stack = _stack(tmp_path, handler_dirs)
    up = _aquatope("up", "--stack", str(stack), "--port", "0", home=home)
    assert up.returncode == 0, up.stderr
    assert "gateway: http://127.0.0.1:" in up.stdout
    assert "deployed 2 functions" in up.stdout
    assert (
        "password" in up.stdout and (home / "basic-auth-password").stat().st_mode & 0o777 == 0o600
    )
    password = (home / "basic-auth-password").read_text().strip()
    assert password not in up.stdout + up.stderr  # never printed unless asked for
    gateway_pid = json.loads((home / "gateway.json").read_text())["pid"]
    try:
        again = _aquatope("up", "--stack", str(stack), "--port", "0", home=home)
        assert again.returncode == 1 and "already running" in again.stderr

        inv = _aquatope("invoke", "echo", "--data", "hello", "-v", home=home)
        assert inv.returncode == 0, inv.stderr
        assert json.loads(inv.stdout)["body"] == "hello"
        assert "cold start: true" in inv.stderr

        assert _aquatope("scale", "echo", "2", home=home).returncode == 0

        def ready() -> bool:
            out = _aquatope("status", "echo", "--json", home=home)
            return json.loads(out.stdout)[0]["ready"] == 2

        wait_until(ready, timeout_s=30, interval_s=0.3)

        lim = _aquatope("limits", "echo", "--cpu", "500m", "--memory", "192Mi", home=home)
        assert lim.returncode == 0, lim.stderr
        status = json.loads(_aquatope("status", "--json", home=home).stdout)
        echo = next(s for s in status if s["name"] == "echo")
        assert (echo["cpu_cores"], echo["memory_mb"]) == (0.5, 192)
        burn = next(s for s in status if s["name"] == "burn")
        assert burn["target"] == 1  # scale.min label

        canary = _aquatope("canary", "echo", "--memory", "256M", "--share", "0.5", home=home)
        assert canary.returncode == 0, canary.stderr
        assert "echo-canary: cpu 0.5, memory 256 MiB, at most 50% of echo's calls" in canary.stdout
        wait_until(
            lambda: (
                json.loads(_aquatope("status", "echo-canary", "--json", home=home).stdout)[0][
                    "ready"
                ]
                == 1
            ),
            timeout_s=30,
            interval_s=0.3,
        )
        pids = {json.loads(_aquatope("invoke", "echo", home=home).stdout)["pid"] for _ in range(4)}
        status = json.loads(_aquatope("status", "--json", home=home).stdout)
        canary_row = next(s for s in status if s["name"] == "echo-canary")
        assert canary_row["invocations"] == 2 and canary_row["canary_of"] == "echo, 50%"
        ended = _aquatope("canary", "echo", "--end", home=home)
        assert ended.returncode == 0 and "echo: canary removed" in ended.stdout
    finally:
        down = _aquatope("down", home=home)
    assert down.returncode == 0, down.stderr
    assert "stopped gateway" in down.stdout
    for pid in pids | {gateway_pid}:
        wait_until(
            lambda pid=pid: (
                not Path(f"/proc/{pid}").exists()
                or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
            ),
            timeout_s=15,
        )
    leftovers = subprocess.run(["pgrep", "-f", str(handler_dirs["echo"])], capture_output=True)
    assert leftovers.stdout == b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["limits", "echo", "--cpu", "lots"], "cpu must be"),
        (["limits", "echo", "--memory", "12 parsecs"], "memory must be"),
        (["limits", "echo"], "give --cpu and/or --memory"),
        (["canary", "echo"], "give --cpu and/or --memory (or --end)"),
        (["canary", "echo", "--memory", "256M", "--share", "0"], "0.0<x<=1.0"),
        (["scale", "echo", "-1"], "-1"),
        (["up", "--stack", "/nonexistent/stack.yml"], "no such stack file"),
        (["invoke", "echo", "--data", "@/nonexistent/file"], "cannot read"),
    ],
)
def test_bad_arguments_give_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), *args])
    assert result.exit_code != 0
    assert message in result.output


def test_commands_without_a_gateway_say_how_to_start_one(tmp_path: Path) -> None:
    from testbed.gateway.auth import ensure_password

    ensure_password(tmp_path)
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "--gateway", "http://127.0.0.1:9", "status"]
    )
    assert result.exit_code == 1
    assert "aquatope up" in result.output


def test_malformed_stack_names_the_field(tmp_path: Path, handler_dirs) -> None:
    stack = tmp_path / "stack.yml"
    stack.write_text(
        "version: 1.0\nfunctions:\n"
        f"  echo:\n    lang: python3-http\n    handler: {handler_dirs['echo']}\n"
        "    limits: {cpu: fast}\n"
    )
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "up", "--stack", str(stack)])
    assert result.exit_code == 1
    assert "functions.echo.limits" in result.output and "cpu" in result.output


def test_invoke_workflow_mix_runs_each_workflow_of_the_mix(tmp_path: Path, handler_dirs) -> None:
    """``invoke --workflow social-network`` (a mix) runs its three workflows, no traceback."""
    from testbed.backends.openfaas import OpenFaaSPlatform
    from testbed.core.platform import FunctionSpec
    from testbed.gateway.auth import ensure_password
    from testbed.gateway.launch import start_gateway

    workflows = tmp_path / "workflows"
    workflows.mkdir()
    for name in ("social-compose-post", "social-read-home", "social-read-user"):
        (workflows / f"{name}.yaml").write_text(
            f"name: {name}\nqos: {{percentile: 95, target_s: 5}}\n"
            "stages:\n  - name: only\n    function: echo\n"
        )
    home = tmp_path / "home"
    password = ensure_password(home)
    gateway = start_gateway(state_dir=home, workflows_dir=workflows)
    try:
        with OpenFaaSPlatform(gateway.url, password=password) as platform:
            platform.deploy(FunctionSpec(name="echo", handler=str(handler_dirs["echo"])))
        result = CliRunner().invoke(
            cli,
            [
                "--home",
                str(home),
                "--gateway",
                gateway.url,
                "invoke",
                "--workflow",
                "social-network",
            ],
        )
    finally:
        gateway.close()
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for name in ("social-compose-post", "social-read-home", "social-read-user"):
        assert f"social-network: workflow {name}" in result.output
    assert result.output.count("status 200") == 3


def test_invoke_workflow_without_a_payload_generator_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "invoke", "--workflow", "no-such-workflow"]
    )
    assert result.exit_code == 1
    assert "no generated payload for workflow 'no-such-workflow'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
