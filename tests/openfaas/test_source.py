"""Building the OpenFaaS gateway from a source archive: where it looks, what a failure says."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.core.errors import BackendUnavailable
from testbed.openfaas_ce.source import GO_BINARY, build_gateway, find_source


def _archive(path: Path, files: dict[str, str], *, link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("src/evil")
            info.type = tarfile.SYMTYPE
            info.linkname = link
            tar.addfile(info)
    return path


def test_missing_archive_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENFAAS_GATEWAY_SOURCE", str(tmp_path / "nope.tar.gz"))
    with pytest.raises(BackendUnavailable, match="OPENFAAS_GATEWAY_SOURCE"):
        find_source()


def test_unsafe_members_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQUATOPE_CACHE", str(tmp_path / "cache"))
    archive = _archive(tmp_path / "a.tar.gz", {"src/gateway/main.go": "x"}, link="/etc/passwd")
    with pytest.raises(BackendUnavailable, match="unsafe member"):
        build_gateway(archive)


@pytest.mark.openfaas
def test_a_failing_build_quotes_the_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not GO_BINARY.is_file():
        pytest.fail(f"{GO_BINARY} missing: scripts/ensure-system-deps.sh installs golang-1.19-go")
    monkeypatch.setenv("AQUATOPE_CACHE", str(tmp_path / "cache"))
    archive = _archive(
        tmp_path / "b.tar.gz",
        {
            "src/gateway/go.mod": "module example.com/gw\n\ngo 1.19\n",
            "src/gateway/main.go": "package main\n\nfunc main() { undefinedThing() }\n",
            "src/LICENSE": "MIT\n",
        },
    )
    with pytest.raises(BackendUnavailable, match="undefined: undefinedThing"):
        build_gateway(archive)
    assert not list((tmp_path / "cache" / "openfaas-gateway").glob("*/gateway"))


def test_missing_tools_are_named_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from testbed.openfaas_ce import StackOptions, start_stack
    from testbed.openfaas_ce.stack import STATE_FILE

    if os.geteuid() != 0:
        pytest.skip("start_stack checks for root first")
    monkeypatch.setenv("PATH", str(tmp_path))  # no prometheus, no alertmanager, no nsenter
    with pytest.raises(BackendUnavailable, match=r"prometheus not found.*apt-get install"):
        start_stack(StackOptions(home=tmp_path))
    assert not (tmp_path / STATE_FILE).exists()


@contextlib.contextmanager
def _scratch_image(tag: str) -> Iterator[str]:
    """A one-label image built from ``scratch`` (no registry, no layers), tagged ``tag`` for
    the block and removed after it."""
    import docker.errors

    from testbed.gateway.runtimes.images.engine import connect_engine

    client = connect_engine()
    try:
        dockerfile = io.BytesIO(b"FROM scratch\nLABEL io.aquatope.test=gateway-image\n")
        client.images.build(fileobj=dockerfile, tag=tag, rm=True)
        yield tag
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)
        client.close()


@pytest.mark.docker
def test_a_named_gateway_image_is_run_as_it_is() -> None:
    from testbed.openfaas_ce.source import IMAGE_ENV, gateway_image

    with _scratch_image("aquatope-test/named-gateway:1") as tag:
        chosen = gateway_image(tag)
    assert (chosen.ref, chosen.origin) == (tag, IMAGE_ENV)


@pytest.mark.docker
def test_auto_prefers_the_official_image_when_it_is_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testbed.openfaas_ce.source import gateway_image

    monkeypatch.setenv("AQUATOPE_CACHE", str(tmp_path / "cache"))  # a build would fill it
    with _scratch_image("aquatope-test/official-gateway:1") as tag:
        chosen = gateway_image("auto", official=tag)
    assert (chosen.ref, chosen.origin) == (tag, "official image")
    assert not (tmp_path / "cache").exists()  # nothing was built


@pytest.mark.docker
def test_a_named_image_no_registry_gives_is_a_one_line_error() -> None:
    import time

    from testbed.openfaas_ce.source import IMAGE_ENV, gateway_image

    started = time.monotonic()
    # a registry on a loopback port nothing listens on: the pull is refused at once
    with pytest.raises(BackendUnavailable, match=rf"{IMAGE_ENV}=127\.0\.0\.1:9/.*not pulled"):
        gateway_image("127.0.0.1:9/aquatope/missing:1", pull_timeout_s=30)
    assert time.monotonic() - started < 30


@pytest.mark.openfaas
@pytest.mark.docker  # the image is built by the Docker engine
def test_auto_builds_from_source_when_no_registry_answers(tmp_path: Path) -> None:
    from testbed.openfaas_ce.source import IMAGE_REPOSITORY, gateway_image

    if not GO_BINARY.is_file():
        pytest.fail(f"{GO_BINARY} missing: scripts/ensure-system-deps.sh installs golang-1.19-go")
    chosen = gateway_image("auto", official="127.0.0.1:9/openfaas/gateway:0.27.2")
    assert chosen.ref.startswith(IMAGE_REPOSITORY + ":")
    assert chosen.origin.startswith("built from source (127.0.0.1:9/openfaas/gateway:0.27.2")


def test_the_gateways_secrets_are_readable_in_its_container_and_by_root_alone_on_the_host(
    tmp_path: Path,
) -> None:
    import stat

    from testbed.openfaas_ce.stack import _write_secrets

    secrets = tmp_path / "home" / "openfaas-ce" / "secrets"
    _write_secrets(secrets, "s3cret")
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (secrets.parent, secrets)}
    # the official image reads the mount as an unprivileged user; the host stops at the parent
    assert mode == {"openfaas-ce": 0o700, "secrets": 0o755}
    for name, text in (("basic-auth-user", "admin"), ("basic-auth-password", "s3cret")):
        assert (secrets / name).read_text() == text  # bare, no newline
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o644
