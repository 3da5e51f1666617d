"""Building the OpenFaaS gateway from a source archive: where it looks, what a failure says."""

from __future__ import annotations

import io
import tarfile
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
