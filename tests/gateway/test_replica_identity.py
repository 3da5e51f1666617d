"""Local replicas run as an unprivileged user when the gateway is root.

The unit tests read the rules (which user, which paths it can reach); the others start real
replica processes through :class:`LocalRuntime` as root and ask the replica itself who it
is, what it can read and where its data go. Replicas are reached on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.core.config import Limits
from testbed.core.errors import ConfigError, DeployError
from testbed.core.platform import FunctionSpec
from testbed.gateway.runtimes.cgroups import detect
from testbed.gateway.runtimes.identity import ReplicaUser, replica_user, unreachable
from testbed.gateway.runtimes.local import LocalRuntime
from testbed.gateway.runtimes.replica_home import remove_orphaned_homes
from tests.helpers import needs, wait_until

REPO = Path(__file__).resolve().parents[2]
NOBODY = pwd.getpwnam("nobody")
as_root = needs(os.geteuid() == 0, "switching replicas to another user needs root")

# reports who the replica runs as and what it can reach
WHOAMI = """
import json, os

def _readable(path):
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        return True
    except OSError:
        return False

def handle(event, context):
    social = os.path.dirname(os.environ["SOCIAL_DB"])
    models = os.environ["AQUATOPE_MODEL_DIR"]
    os.makedirs(social, exist_ok=True)
    probe = os.path.join(social, "probe")
    with open(probe, "w") as fh:
        fh.write("x")
    return {"statusCode": 200, "body": {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "home": os.environ.get("HOME"),
        "password_readable": _readable(os.environ["PASSWORD_FILE"]),
        "models": sorted(os.listdir(models)) if os.path.isdir(models) else [],
        "social_dir": social, "wrote_probe": os.path.exists(probe),
        "sees_home_var": "AQUATOPE_HOME" in os.environ,
    }}
"""


def _user(**kw: Any) -> ReplicaUser:
    base = {"name": "nobody", "uid": NOBODY.pw_uid, "gid": NOBODY.pw_gid, "explicit": False}
    base.update(kw)
    return ReplicaUser(groups=frozenset({base["gid"]}), **base)  # type: ignore[arg-type]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can enter (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="aquatope-identity-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- which user ---------------------------------------------------------------------------------


def test_root_gateway_defaults_to_nobody_and_other_gateways_keep_their_user() -> None:
    user = replica_user(None, euid=0) if "AQUATOPE_REPLICA_USER" not in os.environ else None
    if user is not None:
        assert (user.name, user.uid, user.explicit) == ("nobody", NOBODY.pw_uid, False)
        assert NOBODY.pw_gid in user.groups
    assert replica_user("", euid=0) is None
    assert replica_user("self", euid=0) is None
    assert replica_user("root", euid=0) is None
    assert replica_user("0", euid=0) is None
    named = replica_user("nobody", euid=0)
    assert named is not None and named.explicit
    assert replica_user(str(NOBODY.pw_uid), euid=0) == named
    # a gateway that is not root has nothing to drop, and cannot switch to someone else
    assert replica_user("nobody", euid=NOBODY.pw_uid) is None
    with pytest.raises(ConfigError, match="only a gateway running as root"):
        replica_user("nobody", euid=4321)


def test_an_unknown_replica_user_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"AQUATOPE_REPLICA_USER='no-such-user-x': no such user"):
        replica_user("no-such-user-x", euid=0)
    with pytest.raises(ConfigError, match="no such user"):
        replica_user("99999999999999999999", euid=0)


# -- which paths it reaches -----------------------------------------------------------------------


def test_reach_follows_owner_then_other_bits(shared_dir: Path) -> None:
    user = _user()
    folder = shared_dir / "code"
    folder.mkdir()
    module = folder / "handler.py"
    module.write_text("x = 1\n")
    folder.chmod(0o755)
    module.chmod(0o644)
    assert unreachable(module, user) is None
    assert unreachable(folder, user, "rx") is None
    assert unreachable(folder, user, "w") == folder  # others may not write
    module.chmod(0o600)  # owned by someone else, private
    assert unreachable(module, user) == module
    folder.chmod(0o700)  # the folder now stops it before the file
    assert unreachable(module, user) == folder
    owner = _user(uid=os.stat(folder).st_uid)  # the owner's bits apply to the owner
    assert unreachable(module, owner) is None


@as_root
def test_group_bits_count_for_the_users_groups_only(shared_dir: Path) -> None:
    folder = shared_dir / "code"
    folder.mkdir(mode=0o750)
    module = folder / "handler.py"
    module.write_text("x = 1\n")
    module.chmod(0o640)
    for path in (folder, module):
        os.chown(path, 0, 4242)
    assert unreachable(module, _user(gid=4242)) is None
    assert unreachable(module, _user()) == folder
    # the owner's bits win over the group's, as in the kernel
    folder.chmod(0o070)
    assert unreachable(module, _user(uid=0, gid=4242)) == folder


def test_a_path_still_to_be_created_needs_a_writable_parent(shared_dir: Path) -> None:
    user = _user()
    target = shared_dir / "new" / "social.db"
    assert unreachable(target, user) == shared_dir  # 0755, not the user's: cannot create
    shared_dir.chmod(0o777)
    assert unreachable(target, user) is None
    assert unreachable(Path("/root/.no-such-place"), user) == Path("/root")


def test_orphaned_homes_are_removed_and_live_ones_kept(shared_dir: Path) -> None:
    base = Path(tempfile.gettempdir())
    orphan = base / "aquatope-replicas-test-orphan"
    live = base / "aquatope-replicas-test-live"
    for home, owner in ((orphan, shared_dir / "gone"), (live, shared_dir)):
        home.mkdir(exist_ok=True)
        (home / ".state-dir").write_text(str(owner))
    try:
        assert remove_orphaned_homes() >= 1
        assert not orphan.exists()
        assert live.exists()
    finally:
        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)


# -- real replicas --------------------------------------------------------------------------------


async def _start(
    runtime: LocalRuntime, spec: FunctionSpec, payload: bytes = b"{}"
) -> tuple[dict[str, Any], int]:
    handle = await runtime.start_replica(spec, f"{spec.name}-1", Limits())
    try:
        async with httpx.AsyncClient(timeout=60.0) as client:
            response = await client.post(handle.address, content=payload)
        assert response.status_code == 200, response.text[:300]
        body = response.json()
        assert handle.pid is not None
        cgroup = Path(f"/proc/{handle.pid}/cgroup").read_text()
        body["_in_own_cgroup"] = f"{spec.name}-1" in cgroup
        return body, handle.pid
    finally:
        await runtime.stop_replica(handle)


@as_root
def test_a_replica_of_a_root_gateway_runs_as_nobody_without_the_password_in_reach(
    tmp_path: Path, shared_dir: Path
) -> None:
    state = tmp_path / "state"  # inside root's private tmp: the home goes to $TMPDIR
    (state / "models").mkdir(parents=True)
    (state / "models" / "net-abc.bin").write_bytes(b"weights")
    password = state / "basic-auth-password"
    password.write_text("secret")
    password.chmod(0o600)
    (shared_dir / "handler.py").write_text(WHOAMI)
    spec = FunctionSpec(
        name="whoami", handler=str(shared_dir), env={"PASSWORD_FILE": str(password)}
    )
    cgroups = detect("aquatope-probe") is not None
    runtime = LocalRuntime(state_dir=state, use_cgroups=cgroups)
    try:
        body, _ = asyncio.run(_start(runtime, spec))
    finally:
        if runtime._home is not None:
            shutil.rmtree(runtime._home, ignore_errors=True)
    assert body["uid"] == NOBODY.pw_uid and body["gid"] == NOBODY.pw_gid
    assert 0 not in body["groups"]
    assert body["password_readable"] is False
    assert body["sees_home_var"] is False
    assert body["models"] == ["net-abc.bin"]  # seeded from the gateway's model cache
    assert body["wrote_probe"] is True
    home = Path(body["home"])
    assert home.parent == Path(tempfile.gettempdir()) and home.name.startswith("aquatope-")
    assert body["social_dir"] == str(home / "social")
    if cgroups:
        assert body["_in_own_cgroup"]  # joined as root, before the switch


@as_root
def test_a_real_social_function_stores_its_data_as_nobody(tmp_path: Path) -> None:
    if any(unreachable(p, _user(), "rx") for p in (REPO, Path(sys.prefix))):
        pytest.skip("the repository is not readable by nobody here (a private checkout)")
    spec = FunctionSpec(
        name="read-user-timeline", handler=str(REPO / "functions/read-user-timeline")
    )
    runtime = LocalRuntime(state_dir=tmp_path / "state", use_cgroups=False)
    payload = json.dumps({"user_id": 3, "start": 0, "stop": 5}).encode()
    try:
        body, _ = asyncio.run(_start(runtime, spec, payload))
        assert runtime._home is not None
        db = runtime._home / "social" / "social.db"
        assert db.stat().st_uid == NOBODY.pw_uid  # created by the replica itself
        assert (body["user_id"], body["start"], body["stop"]) == (3, 0, 5)
        assert isinstance(body["post_ids"], list)
    finally:
        if runtime._home is not None:
            shutil.rmtree(runtime._home, ignore_errors=True)


@as_root
def test_code_out_of_reach_falls_back_to_the_gateway_user_with_a_warning(
    tmp_path: Path, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    private = tmp_path / "handler"  # under root's private tmp
    private.mkdir()
    (private / "handler.py").write_text(WHOAMI)
    state = tmp_path / "state"
    password = shared_dir / "pw"
    password.write_text("secret")
    password.chmod(0o600)
    spec = FunctionSpec(name="private", handler=str(private), env={"PASSWORD_FILE": str(password)})
    runtime = LocalRuntime(state_dir=state, use_cgroups=False)
    caplog.set_level(logging.WARNING, logger="aquatope.gateway")
    try:
        body, _ = asyncio.run(_start(runtime, spec))
    finally:
        if runtime._home is not None:
            shutil.rmtree(runtime._home, ignore_errors=True)
    assert body["uid"] == 0 and body["password_readable"] is True
    warned = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert (
        len(warned) == 1 and "private: replicas run as the gateway's user, not nobody" in warned[0]
    )
    assert str(tmp_path.parents[1]) in warned[0] or str(tmp_path) in warned[0]


@as_root
def test_code_out_of_reach_of_a_named_user_refuses_the_start(tmp_path: Path) -> None:
    private = tmp_path / "handler"
    private.mkdir()
    (private / "handler.py").write_text(WHOAMI)
    runtime = LocalRuntime(state_dir=tmp_path / "state", use_cgroups=False, user="nobody")
    spec = FunctionSpec(name="private", handler=str(private))
    with pytest.raises(DeployError, match=r"private: replicas run as nobody .* cannot reach /"):
        asyncio.run(runtime.start_replica(spec, "private-1", Limits()))
    assert runtime._procs == {}


# starts a runtime and one replica as nobody, prints the replica's pid, then waits to be killed
GATEWAY = """
import asyncio, json, sys, time
from pathlib import Path
from testbed.core.config import Limits
from testbed.core.platform import FunctionSpec
from testbed.gateway.runtimes.local import LocalRuntime

async def main():
    runtime = LocalRuntime(state_dir=Path(sys.argv[1]), use_cgroups=False, user="nobody")
    spec = FunctionSpec(name="orphan", handler=sys.argv[2])
    handle = await runtime.start_replica(spec, "orphan-1", Limits())
    print(json.dumps({"pid": handle.pid, "home": str(runtime._home)}), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@as_root
def test_a_replica_switched_to_nobody_still_dies_with_its_gateway(
    tmp_path: Path, shared_dir: Path
) -> None:
    """The kernel forgets a parent-death signal when the user changes: it is set after."""
    (shared_dir / "handler.py").write_text(WHOAMI)
    gateway = subprocess.Popen(
        [sys.executable, "-c", GATEWAY, str(tmp_path / "state"), str(shared_dir)],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert gateway.stdout is not None
        started = json.loads(gateway.stdout.readline())
        pid = started["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        assert f"Uid:\t{NOBODY.pw_uid}\t" in status
    finally:
        gateway.kill()
        gateway.wait()
    try:
        assert wait_until(lambda: not _alive(pid), timeout_s=10.0)
    finally:
        shutil.rmtree(started["home"], ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
