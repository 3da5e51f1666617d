"""scripts/k3d-up.sh: `--dry-run` prints every command; missing tools are named, each once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "k3d-up.sh"
TOOLS = ("k3d", "kubectl", "helm")


def _bin_dir(tmp_path: Path, fake_tools: tuple[str, ...]) -> Path:
    """A PATH with only what the script needs besides the tools, plus fake ``fake_tools``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dirname", "awk"):
        found = shutil.which(name)
        assert found, f"{name} is needed by the script"
        (bin_dir / name).symlink_to(found)
    for name in fake_tools:
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho {name} must not run in a dry run >&2\nexit 97\n")
        tool.chmod(0o755)
    return bin_dir


def _run(
    tmp_path: Path, *args: str, fake_tools: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    env = {
        "PATH": str(_bin_dir(tmp_path, fake_tools)),
        "HOME": str(tmp_path),
        "AQUATOPE": "aquatope",  # the CLI as a user's PATH has it, whatever this checkout holds
    }
    return subprocess.run(
        [bash, str(SCRIPT), *args], capture_output=True, text=True, timeout=30, env=env
    )


def test_dry_run_prints_every_command_and_names_missing_tools(tmp_path: Path) -> None:
    result = _run(tmp_path, "--dry-run", "--port", "18080", "--cluster", "t1")
    assert result.returncode == 0, result.stderr
    for tool in TOOLS:
        assert f"k3d-up: {tool} is missing" in result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert lines[0] == "+ k3d cluster create t1 --agents 0 -p 127.0.0.1:18080:31112@server:0 --wait"
    text = "\n".join(lines)
    assert "+ helm upgrade --install openfaas openfaas/openfaas" in text
    assert "functions.imagePullPolicy=IfNotPresent" in text
    stack_images = [
        line.split()[1]
        for line in (SCRIPT.parents[1] / "stack.yml").read_text().splitlines()
        if line.strip().startswith("image:")
    ]
    assert stack_images
    for image in stack_images:
        assert f"+ k3d image import {image} -c t1" in text
    assert lines[-1] == "+ aquatope --gateway http://127.0.0.1:18080 deploy --stack stack.yml"


def test_dry_run_runs_no_tool(tmp_path: Path) -> None:
    result = _run(tmp_path, "--dry-run", fake_tools=TOOLS)
    assert result.returncode == 0, result.stderr
    assert "missing" not in result.stderr and "must not run" not in result.stderr


def test_missing_tools_stop_a_real_run(tmp_path: Path) -> None:
    result = _run(tmp_path, fake_tools=("kubectl",))
    assert result.returncode == 1
    assert "k3d-up: k3d is missing" in result.stderr
    assert "k3d-up: helm is missing" in result.stderr
    assert "kubectl is missing" not in result.stderr
    assert "2 tool(s) missing; nothing done" in result.stderr
    assert "+ " not in result.stdout


@pytest.mark.parametrize("args", [["--port", "x"], ["--bogus"], ["--stack", "nope.yml"]])
def test_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    result = _run(tmp_path, "--dry-run", *args)
    assert result.returncode == 2 and result.stderr.startswith("k3d-up: ")


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run(
        [shellcheck, str(SCRIPT)], capture_output=True, text=True, env=os.environ
    )
    assert result.returncode == 0, result.stdout
