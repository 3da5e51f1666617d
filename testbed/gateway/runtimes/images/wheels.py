"""Python dependencies for function images, fetched as wheels on the host.

``pip`` inside a container cannot reach the package index here, so the host resolves
and downloads every wheel (with its own pip configuration: index, ``find-links``, the
local torch CPU wheel) into a cache directory keyed by the requirement set and the
image's Python version. The image build then installs from that directory with
``--no-index``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from testbed.core.errors import ConfigError, DeployError
from testbed.gateway.runtimes.images.base import cache_dir

__all__ = ["ensure_wheels", "read_requirements", "requirements_key"]

Log = Callable[[str], None]
_COMPLETE = ".complete"


def read_requirements(path: Path) -> list[str]:
    """Requirement lines of a ``requirements.txt`` (comments and blanks dropped).

    Raises:
        ConfigError: the file uses pip options (``-r``, ``--index-url`` ...), which cannot
            be honoured offline inside an image build; the message names file and line.
    """
    lines: list[str] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return lines
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ConfigError(
                f"{path}:{number}: pip options ({line.split()[0]}) are not supported in "
                "function requirements; list plain requirements only"
            )
        lines.append(re.sub(r"\s+", "", line) if ";" not in line else line)
    return lines


def requirements_key(lines: Iterable[str], python_version: str) -> str:
    """A short content hash of a requirement set for one Python version and machine."""
    digest = hashlib.sha256()
    for line in sorted(set(lines)):
        digest.update(line.encode() + b"\n")
    digest.update(f"py{python_version}-{platform.machine()}".encode())
    return digest.hexdigest()[:16]


def _pip_command(lines: list[str], dest: Path, python_version: str) -> list[str]:
    host = "{}.{}".format(*sys.version_info[:2])
    req_args = list(lines)
    if host == python_version:
        # Same interpreter version: `pip wheel` also builds sdists into wheels.
        return [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(dest), *req_args]
    machine = platform.machine()
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 16, -1)]
    platforms += [f"manylinux2014_{machine}"]
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        *[arg for tag in platforms for arg in ("--platform", tag)],
        "--dest",
        str(dest),
        *req_args,
    ]


def ensure_wheels(lines: list[str], python_version: str, *, log: Log = lambda _msg: None) -> Path:
    """Download (once) every wheel needed by ``lines`` for ``python_version``.

    Args:
        lines: requirement specifiers, e.g. ``["numpy>=1.26", "torch==2.13.0"]``.
        python_version: the image's ``major.minor``, e.g. ``"3.11"``.
        log: receives one-line progress messages.

    Returns:
        A directory holding the wheels and a ``requirements.txt`` with ``lines``.

    Raises:
        DeployError: pip could not resolve or download them (message has pip's last lines).
    """
    key = requirements_key(lines, python_version)
    root = cache_dir() / "wheels"
    target = root / key
    if (target / _COMPLETE).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    log(f"wheels: downloading {len(lines)} requirement(s) for Python {python_version}")
    with tempfile.TemporaryDirectory(prefix=f"{key}-", dir=root) as tmp:
        staging = Path(tmp) / "wheels"
        staging.mkdir()
        proc = subprocess.run(
            _pip_command(lines, staging, python_version),
            capture_output=True,
            text=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
            raise DeployError(f"pip could not fetch wheels for {lines}: {tail}")
        (staging / "requirements.txt").write_text("\n".join(lines) + "\n")
        (staging / _COMPLETE).write_text("")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target
