"""The Python base image every function image starts from, obtained without a registry if need be.

Order of preference:

1. ``$AQUATOPE_BASE_IMAGE`` when set (any local image with ``python3``);
2. ``python:3.11-slim`` when it is present locally or can be pulled (tried once, briefly);
3. a Debian bookworm root filesystem made with ``debootstrap --variant=minbase`` from the
   mirror apt uses on this host, trimmed and ``docker import``-ed as
   ``aquatope/base:bookworm`` (about 45 s once; then cached by tag and recipe label).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.core.config import aquatope_home
from testbed.core.errors import DeployError
from testbed.gateway.runtimes.images.engine import LABEL_MANAGED, LABEL_ROLE, engine_errors

if TYPE_CHECKING:
    import docker

__all__ = ["BaseImage", "cache_dir", "debian_mirror", "ensure_base_image", "image_lock"]

SLIM_IMAGE = "python:3.11-slim"
DEBOOTSTRAP_TAG = "aquatope/base:bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Bump when the recipe below changes: a cached base with another recipe is rebuilt.
_RECIPE = "debootstrap-minbase-bookworm-python3-pip-venv-trimmed-v1"
_LABEL_RECIPE = "io.aquatope.recipe"
_TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)

_PRINT_VERSION = "import sys; print('{}.{}'.format(*sys.version_info[:2]))"

Log = Callable[[str], None]


@dataclass(frozen=True)
class BaseImage:
    """A base image: its reference, content id, Python ``major.minor`` and how we got it."""

    ref: str
    image_id: str
    python_version: str
    source: str  # "env" | "slim" | "debootstrap"


def cache_dir() -> Path:
    """Where image building keeps wheels and locks: ``$AQUATOPE_CACHE_DIR`` or
    ``$AQUATOPE_HOME/cache``."""
    explicit = os.environ.get("AQUATOPE_CACHE_DIR")
    return Path(explicit) if explicit else aquatope_home() / "cache"


@contextmanager
def image_lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock (``~/.aquatope/cache/locks/NAME.lock``) around a build."""
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses on this host (``$AQUATOPE_DEBIAN_MIRROR`` overrides).

    Reads ``sources.list`` (one-line format) and ``sources.list.d/*.list|*.sources``
    (deb822) and returns the first ``deb`` URI that is not a security or updates archive.
    """
    override = os.environ.get("AQUATOPE_DEBIAN_MIRROR")
    if override:
        return override
    uris: list[str] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for block in re.split(r"\n\s*\n", text):
                if re.search(r"^Types:.*\bdeb\b", block, re.M):
                    match = re.search(r"^URIs:\s*(\S+)", block, re.M)
                    if match:
                        uris.append(match.group(1))
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                match = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
                if match:
                    uris.append(match.group(1))
    for uri in uris:
        if "security" not in uri and uri.startswith(("http://", "https://", "file:")):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _python_version(client: docker.DockerClient, ref: str) -> str:
    with engine_errors(f"probe python3 in {ref}"):
        out = client.containers.run(
            ref,
            ["python3", "-c", _PRINT_VERSION],
            remove=True,
            network_mode="none",
        )
    return bytes(out).decode().strip()


def _local(client: docker.DockerClient, ref: str) -> docker.models.images.Image | None:
    import docker.errors

    try:
        with engine_errors(f"inspect image {ref}"):
            return client.images.get(ref)
    except DeployError:
        return None
    except docker.errors.NotFound:
        return None


def _describe(client: docker.DockerClient, ref: str, source: str) -> BaseImage:
    image = _local(client, ref)
    if image is None:
        raise DeployError(f"base image {ref} vanished")
    labels = image.labels or {}
    version = labels.get("io.aquatope.python") or _python_version(client, ref)
    return BaseImage(ref=ref, image_id=str(image.id), python_version=version, source=source)


def _try_pull_slim(log: Log) -> bool:
    """Pull ``python:3.11-slim`` with a short timeout; False when no registry answers."""
    import docker
    import docker.errors
    import requests.exceptions

    log(f"base: trying to pull {SLIM_IMAGE}")
    try:
        quick = docker.from_env(timeout=30)
        try:
            quick.images.pull("python", tag="3.11-slim")
        finally:
            quick.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        first = str(getattr(exc, "explanation", None) or exc).splitlines()[0][:160]
        log(f"base: no registry ({first}); building a Debian bookworm root filesystem")
        return False
    return True


def _debootstrap(client: docker.DockerClient, log: Log) -> None:
    if os.geteuid() != 0:
        raise DeployError(
            "building the base image without a registry needs root (debootstrap); run "
            "`sudo aquatope build`, or set AQUATOPE_BASE_IMAGE to a local image with python3"
        )
    if shutil.which("debootstrap") is None:
        log("base: installing debootstrap with apt-get")
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "debootstrap"],
            capture_output=True,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if proc.returncode != 0 or shutil.which("debootstrap") is None:
            raise DeployError(
                f"debootstrap is missing and apt-get could not install it: "
                f"{(proc.stderr or proc.stdout).strip()[-300:]}"
            )
    mirror = debian_mirror()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    debs = (cache / "debs").resolve()  # downloaded packages, reused by a later rebuild
    debs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"base: debootstrap bookworm from {mirror} (about a minute)")
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--cache-dir={debs}",
                "--include=python3,python3-pip,python3-venv",
                "bookworm",
                str(rootfs),
                mirror,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise DeployError(f"debootstrap failed from {mirror}: {' | '.join(tail)}")
        for rel in _TRIM:
            target = rootfs / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        # Debian marks its python as externally managed; our images install from local
        # wheels into the system interpreter on purpose.
        for marker in (rootfs / "usr" / "lib").glob("python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        version = subprocess.run(
            ["chroot", str(rootfs), "python3", "-c", _PRINT_VERSION],
            capture_output=True,
            text=True,
        ).stdout.strip()
        log(f"base: importing the root filesystem as {DEBOOTSTRAP_TAG}")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        repository, tag = DEBOOTSTRAP_TAG.split(":")
        changes = [
            'CMD ["python3"]',
            "ENV LANG=C.UTF-8",
            f"LABEL {LABEL_MANAGED}=1 {LABEL_ROLE}=base {_LABEL_RECIPE}={_RECIPE}"
            + (f" io.aquatope.python={version}" if version else ""),
        ]
        try:
            with engine_errors("docker import of the base root filesystem"):
                client.api.import_image_from_stream(
                    tar.stdout, repository=repository, tag=tag, changes=changes
                )
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise DeployError("tar of the base root filesystem failed")


def ensure_base_image(
    client: docker.DockerClient, *, log: Log = lambda _msg: None, allow_pull: bool = True
) -> BaseImage:
    """Return a local Python base image, building it if needed (cached across calls).

    Args:
        client: a Docker client from :func:`testbed.gateway.runtimes.images.engine.connect_engine`.
        log: receives one-line progress messages.
        allow_pull: try ``python:3.11-slim`` from a registry before debootstrap.

    Raises:
        DeployError: no base could be obtained (the message says why and what to do).
    """
    override = os.environ.get("AQUATOPE_BASE_IMAGE")
    if override:
        if _local(client, override) is None:
            raise DeployError(f"AQUATOPE_BASE_IMAGE={override} is not a local image")
        return _describe(client, override, "env")
    with image_lock("base"):
        if _local(client, SLIM_IMAGE) is not None:
            return _describe(client, SLIM_IMAGE, "slim")
        cached = _local(client, DEBOOTSTRAP_TAG)
        if cached is not None and (cached.labels or {}).get(_LABEL_RECIPE) == _RECIPE:
            return _describe(client, DEBOOTSTRAP_TAG, "debootstrap")
        if allow_pull and _try_pull_slim(log):
            return _describe(client, SLIM_IMAGE, "slim")
        _debootstrap(client, log)
        return _describe(client, DEBOOTSTRAP_TAG, "debootstrap")
