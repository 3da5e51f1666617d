"""Build the real OpenFaaS gateway (third party, MIT) from its source archive, and its image.

The archive (``gateway/`` of github.com/openfaas/faas with its ``vendor/`` tree, and
``LICENSE``) is named by ``$OPENFAAS_GATEWAY_SOURCE``; by default
``../shared/third_party/openfaas-gateway/openfaas-gateway-src.tar.gz`` next to the repository.
It is never copied into the repository: the binary, the UI assets and the MIT ``LICENSE`` are
built into a cache directory outside it (``$AQUATOPE_CACHE`` or ``~/.cache/aquatope``), keyed
by the archive's hash, and an image ``aquatope-of/gateway:<hash>`` ``FROM scratch`` is built
from that directory (no registry needed). The ``LICENSE`` sits beside the binary and inside the
image.

:func:`gateway_image` picks the image a stack runs: ``$OPENFAAS_GATEWAY_IMAGE`` when set (an
image reference, or ``local`` for the build from source), else the official image
(:data:`OFFICIAL_IMAGE`) when it is present or a registry gives it, else the build from source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.core.atomic import atomic_write_text
from testbed.core.errors import BackendUnavailable

__all__ = [
    "GO_BINARY",
    "IMAGE_ENV",
    "IMAGE_REPOSITORY",
    "OFFICIAL_IMAGE",
    "GatewayImage",
    "build_gateway",
    "build_image",
    "cache_root",
    "find_source",
    "gateway_image",
]

GO_BINARY = Path("/usr/lib/go-1.19/bin/go")  # Debian bookworm's golang-1.19-go
IMAGE_REPOSITORY = "aquatope-of/gateway"
IMAGE_ENV = "OPENFAAS_GATEWAY_IMAGE"
# the CE gateway release nearest the source archive (both still speak NATS Streaming)
OFFICIAL_IMAGE = "ghcr.io/openfaas/gateway:0.27.2"
PULL_TIMEOUT_S = 60.0
LABEL_STACK = "io.aquatope.openfaas-ce"
_DEFAULT_SOURCE = Path("../shared/third_party/openfaas-gateway/openfaas-gateway-src.tar.gz")
_DOCKERFILE = """\
# The OpenFaaS gateway (MIT, see LICENSE), built by testbed.openfaas_ce from its source archive.
FROM scratch
COPY gateway /home/app/gateway
COPY assets /home/app/assets
COPY LICENSE /home/app/LICENSE
WORKDIR /home/app
EXPOSE 8080 8082
ENTRYPOINT ["/home/app/gateway"]
"""


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def find_source() -> Path:
    """The gateway source archive: ``$OPENFAAS_GATEWAY_SOURCE``, else the shared default.

    Raises:
        BackendUnavailable: no archive there (the message names the variable).
    """
    named = os.environ.get("OPENFAAS_GATEWAY_SOURCE")
    path = Path(named) if named else (_repo_root() / _DEFAULT_SOURCE).resolve()
    if not path.is_file():
        raise BackendUnavailable(
            f"OpenFaaS gateway source archive not found at {path}; set OPENFAAS_GATEWAY_SOURCE "
            "to openfaas-gateway-src.tar.gz (the gateway/ folder of openfaas/faas with vendor/)"
        )
    return path


def cache_root() -> Path:
    """``$AQUATOPE_CACHE`` or ``~/.cache/aquatope`` (outside the repository)."""
    named = os.environ.get("AQUATOPE_CACHE")
    return Path(named) if named else Path.home() / ".cache" / "aquatope"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def _safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not str(target).startswith(str(dest.resolve())) or member.issym() or member.islnk():
                raise BackendUnavailable(f"{archive}: unsafe member {member.name!r}")
        tar.extractall(dest)


def build_gateway(source: Path | None = None, *, go: Path = GO_BINARY) -> Path:
    """Build (once per archive) the gateway binary with its assets and LICENSE.

    Args:
        source: the archive; default :func:`find_source`.
        go: the Go 1.19 toolchain (``apt-get install golang-1.19-go``).

    Returns:
        The directory holding ``gateway``, ``assets/``, ``LICENSE`` and a ``Dockerfile``.

    Raises:
        BackendUnavailable: no archive, no Go, or the build failed (its last lines quoted).
    """
    source = source or find_source()
    out = cache_root() / "openfaas-gateway" / _digest(source)
    if (out / "gateway").is_file() and (out / "LICENSE").is_file():
        return out
    if not go.is_file():
        raise BackendUnavailable(
            f"{go} not found: building the OpenFaaS gateway needs Go 1.19 "
            "(apt-get install -y golang-1.19-go)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="of-build-", dir=out.parent) as tmp:
        work = Path(tmp)
        _safe_extract(source, work / "src")
        roots = [p.parent for p in (work / "src").glob("*/gateway/main.go")]
        if not roots:
            raise BackendUnavailable(f"{source}: no */gateway/main.go inside")
        gateway_dir = roots[0]
        env = dict(
            os.environ,
            GOFLAGS="-mod=vendor",
            GOPROXY="off",
            CGO_ENABLED="0",
            GOCACHE=str(cache_root() / "go-build"),
            GOPATH=str(work / "gopath"),
        )
        proc = subprocess.run(
            [str(go), "build", "-o", str(work / "stage" / "gateway"), "."],
            cwd=gateway_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise BackendUnavailable(f"building the OpenFaaS gateway failed: {tail}")
        stage = work / "stage"
        shutil.copytree(gateway_dir / "assets", stage / "assets")
        shutil.copy2(gateway_dir.parent / "LICENSE", stage / "LICENSE")
        atomic_write_text(stage / "Dockerfile", _DOCKERFILE)
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    return out


def build_image(build_dir: Path) -> str:
    """Build (once) the gateway image from :func:`build_gateway`'s directory.

    Returns:
        The image tag, ``aquatope-of/gateway:<hash of the archive>``.

    Raises:
        BackendUnavailable: no engine, or the build failed.
    """
    from testbed.gateway.runtimes.images.engine import connect_engine, engine_errors

    tag = f"{IMAGE_REPOSITORY}:{build_dir.name}"
    client = connect_engine()
    try:
        with engine_errors("the OpenFaaS gateway image"):
            import docker.errors

            try:
                client.images.get(tag)
                return tag
            except docker.errors.ImageNotFound:
                pass
            client.images.build(
                path=str(build_dir),
                tag=tag,
                rm=True,
                labels={
                    LABEL_STACK: "gateway",
                    "org.opencontainers.image.licenses": "MIT",
                    "org.opencontainers.image.source": "openfaas/faas gateway (see LICENSE)",
                },
            )
    finally:
        client.close()
    return tag


@dataclass(frozen=True)
class GatewayImage:
    """The gateway image a stack runs, and where it came from (said by ``aquatope up``)."""

    ref: str
    origin: str


def gateway_image(
    choice: str | None = None,
    *,
    official: str = OFFICIAL_IMAGE,
    pull_timeout_s: float = PULL_TIMEOUT_S,
) -> GatewayImage:
    """The OpenFaaS gateway image to run.

    Args:
        choice: an image reference, ``local`` (build from the source archive) or ``auto``
            (default: ``$OPENFAAS_GATEWAY_IMAGE``, else ``auto``): the official image when it
            is here or a registry gives it, else the build from source.
        official: the official image ``auto`` tries first.
        pull_timeout_s: how long a pull may take before it counts as no registry.

    Raises:
        BackendUnavailable: a named image that is neither here nor pullable, or a build
            from source that cannot run (no archive, no Go, no engine).
    """
    wanted = (os.environ.get(IMAGE_ENV, "") if choice is None else choice).strip() or "auto"
    if wanted == "local":
        return GatewayImage(build_image(build_gateway()), "built from source")
    if wanted != "auto":
        problem = _present_or_pulled(wanted, pull_timeout_s)
        if problem:
            raise BackendUnavailable(
                f"{IMAGE_ENV}={wanted}: not on this engine and not pulled ({problem}); "
                f"unset it (or set it to 'local') to build the gateway from source"
            )
        return GatewayImage(wanted, IMAGE_ENV)
    problem = _present_or_pulled(official, pull_timeout_s)
    if not problem:
        return GatewayImage(official, "official image")
    return GatewayImage(
        build_image(build_gateway()), f"built from source ({official} not pulled: {problem})"
    )


def _present_or_pulled(ref: str, timeout_s: float) -> str:
    """``""`` when ``ref`` is on the engine (pulled now if need be), else why it is not."""
    import docker.errors
    import requests.exceptions

    from testbed.gateway.runtimes.images.engine import connect_engine, error_line

    client = connect_engine(timeout_s=timeout_s)
    try:
        try:
            client.images.get(ref)
            return ""
        except docker.errors.ImageNotFound:
            pass
        client.images.pull(ref)
        return ""
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        return error_line(exc)
    finally:
        client.close()
