"""Image building: content-hash caching, rebuilds on change, the runner closure, inputs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec

pytestmark = pytest.mark.docker


def test_second_build_is_cached_and_a_change_rebuilds(
    docker_client: Any, probe_image: str, tmp_path: Path
) -> None:
    from testbed.gateway.runtimes.images import ImageBuilder

    handler = tmp_path / "probe-copy"
    shutil.copytree(Path(__file__).parent / "functions" / "probe", handler)
    spec = FunctionSpec(
        name="probe-copy", image="aquatope-test/probe-copy:latest", handler=str(handler)
    )
    builder = ImageBuilder(docker_client)
    first = builder.build([spec])[0]
    again = builder.build([spec])[0]
    assert again.cached and again.source_hash == first.source_hash
    assert builder.is_current(spec)
    (handler / "handler.py").write_text((handler / "handler.py").read_text() + "\n# changed\n")
    assert not builder.is_current(spec)
    changed = builder.build([spec])[0]
    assert not changed.cached and changed.source_hash != first.source_hash
    image = docker_client.images.get(spec.image)
    assert image.labels["io.aquatope.source-hash"] == changed.source_hash
    assert image.labels["io.aquatope.function"] == "probe-copy"
    # the runner and the handler are inside, where the runtime expects them
    out = docker_client.containers.run(
        spec.image,
        ["python3", "-c", "import testbed.runner.server, sys; print(sys.version_info[:2])"],
        remove=True,
        network_mode="none",
    )
    assert out.decode().strip() == "(3, 11)"
    docker_client.images.remove(spec.image, force=True)


def test_runner_closure_is_stdlib_only_and_shared_helpers_are_found() -> None:
    from testbed.gateway.runtimes.images.context import runner_files, shared_files

    files = runner_files()
    assert "testbed/runner/server.py" in files and "testbed/__init__.py" in files
    assert not any(name.startswith(("testbed/gateway", "testbed/backends")) for name in files)
    repo = Path(__file__).resolve().parents[2]
    shared = shared_files(repo / "functions" / "object-detection")
    assert "functions/common/models.py" in shared and "functions/__init__.py" in shared
    assert not any(name.startswith("functions/object-detection") for name in shared)


def test_requirements_with_pip_options_are_refused(tmp_path: Path) -> None:
    from testbed.gateway.runtimes.images.wheels import read_requirements

    path = tmp_path / "requirements.txt"
    path.write_text("# deps\nnumpy>=1.26  # arrays\n\n--index-url http://example.invalid\n")
    with pytest.raises(ConfigError, match=r"requirements.txt:4: pip options"):
        read_requirements(path)
    path.write_text("numpy >= 1.26\npillow\n")
    assert read_requirements(path) == ["numpy>=1.26", "pillow"]


def test_debian_mirror_comes_from_apt_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testbed.gateway.runtimes.images.base import debian_mirror

    monkeypatch.delenv("AQUATOPE_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert debian_mirror(tmp_path) == "http://old.example/debian"
    monkeypatch.setenv("AQUATOPE_DEBIAN_MIRROR", "http://override.example/debian")
    assert debian_mirror(tmp_path) == "http://override.example/debian"


def test_build_command_builds_then_reports_cached(probe_image: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from testbed.cli import cli

    stack = tmp_path / "stack.yml"
    probe = Path(__file__).parent / "functions" / "probe"
    stack.write_text(
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  probe:\n"
        f"    lang: python3-http\n    handler: {probe}\n    image: {probe_image}\n"
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["build", "--stack", str(stack)])
    assert result.exit_code == 0, result.output
    assert "1 image(s), 0 built, 1 cached" in result.output
    missing = runner.invoke(cli, ["build", "--stack", str(stack), "nope"])
    assert missing.exit_code == 1 and "no function named 'nope'" in missing.output


def test_ensure_from_many_threads_builds_one_at_a_time(
    docker_client: Any, probe_image: str, tmp_path: Path
) -> None:
    # the docker runtime starts replicas of several functions at once, each in a thread;
    # reading sources parses them with ast, which CPython 3.11 cannot do from two threads
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from testbed.gateway.runtimes.images import ImageBuilder

    specs = []
    for i in range(4):
        handler = tmp_path / f"probe-{i}"
        shutil.copytree(Path(__file__).parent / "functions" / "probe", handler)
        specs.append(
            FunctionSpec(
                name=f"probe-{i}", image=f"aquatope-test/probe-{i}:latest", handler=str(handler)
            )
        )
    builder = ImageBuilder(docker_client)
    inside, most = [0], [0]
    guard = threading.Lock()
    real_build = builder.build

    def counted(batch: Any, **kw: Any) -> Any:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            return real_build(batch, **kw)
        finally:
            with guard:
                inside[0] -= 1

    builder.build = counted  # type: ignore[method-assign]
    with ThreadPoolExecutor(len(specs)) as pool:
        refs = list(pool.map(builder.ensure, specs))
    assert refs == [s.image for s in specs]
    assert most[0] == 1
    for spec in specs:
        assert builder.is_current(spec)
        docker_client.images.remove(spec.image, force=True)
