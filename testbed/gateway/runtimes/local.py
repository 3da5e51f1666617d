"""The ``local`` runtime: each replica is an OS process running ``python -m testbed.runner``.

Replicas listen on loopback ports chosen by the kernel. Limits are enforced through cgroups
when this process may create them (root, or a delegated v2 subtree), otherwise they are
recorded and reported as advisory. Replicas get ``PR_SET_PDEATHSIG`` so they die with the
gateway, and their pids are recorded so a later ``up`` can kill leftovers of a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from testbed.core.atomic import atomic_write_json
from testbed.core.config import Limits, aquatope_home
from testbed.core.errors import DeployError
from testbed.core.platform import FunctionSpec
from testbed.gateway._pdeathsig import die_with_parent
from testbed.gateway.runtimes.base import ExitStatus, LimitsOutcome, ReplicaHandle, ReplicaRuntime
from testbed.gateway.runtimes.cgroups import CgroupTree, detect, remove_stale_groups
from testbed.gateway.runtimes.identity import (
    ReplicaUser,
    drop_privileges,
    replica_user,
    unreachable,
)
from testbed.gateway.runtimes.interpreter import runner_command
from testbed.gateway.runtimes.replica_home import prepare_replica_home, remove_orphaned_homes

__all__ = ["LocalRuntime", "kill_recorded_replicas", "replica_environment"]

READY_TIMEOUT_S = 120.0
_EXITS_KEPT = 256
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # where ``testbed`` is imported from

_logger = logging.getLogger("aquatope.gateway")


def _child_setup(cgroup_procs: list[str], user: ReplicaUser | None) -> None:
    """Runs in the child between fork and exec: join cgroups (as root), switch to the
    replica user, then ask to die with the parent (a change of user clears that request)."""
    for path in cgroup_procs:
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))
    if user is not None:
        drop_privileges(user)
    die_with_parent(signal.SIGKILL)


_PRIVATE_ENV_PREFIXES = ("AQUATOPE_", "OPENFAAS_")


def replica_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The gateway's environment minus what function code must not see.

    ``AQUATOPE_HOME`` leads to the admin password and ``OPENFAAS_*`` may hold credentials;
    a replica gets only its own ``AQUATOPE_*`` variables, set after this.
    """
    env = {k: v for k, v in parent.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
    if parent.get("AQUATOPE_MODEL_DIR"):
        env["AQUATOPE_MODEL_DIR"] = parent["AQUATOPE_MODEL_DIR"]
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _pids_file(state_dir: Path) -> Path:
    return state_dir / "local-replicas.json"


def kill_recorded_replicas(state_dir: Path | None = None) -> int:
    """Kill replica processes recorded by an earlier gateway that did not shut down cleanly."""
    path = _pids_file(state_dir or aquatope_home())
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    killed = 0
    for entry in recorded.values():
        pid = int(entry["pid"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"testbed.runner" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    path.unlink(missing_ok=True)
    return killed


async def _wait_pidfd(proc: asyncio.subprocess.Process) -> int | None:
    """Wait for ``proc`` to exit through a pidfd; its exit code, or ``None`` if not known yet."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    # asyncio's watcher thread may have reaped it already; then its return code is queued
    return _exit_code_now(proc)


_KILLED_CODES = (os.CLD_KILLED, os.CLD_DUMPED)


def _exit_code_now(proc: asyncio.subprocess.Process) -> int | None:
    """The exit code if the process has exited (reaped or not), else ``None``."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    except ChildProcessError:
        return proc.returncode
    if info is None:
        return None
    return -info.si_status if info.si_code in _KILLED_CODES else info.si_status


class LocalRuntime(ReplicaRuntime):
    """Replicas as local processes, limited with cgroups when possible.

    Args:
        state_dir: the gateway's state directory (default ``$AQUATOPE_HOME``).
        use_cgroups: enforce limits with cgroups where this process may create them.
        user: the account replicas switch to when the gateway is root, as
            :func:`~.identity.replica_user` reads it (default ``$AQUATOPE_REPLICA_USER``,
            else ``nobody``; ``"self"`` keeps the gateway's user).

    Raises:
        ConfigError: ``$AQUATOPE_REPLICA_USER`` names no user, or another user while the
            gateway is not root.
    """

    name = "local"

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        use_cgroups: bool = True,
        user: str | None = None,
    ) -> None:
        self.user = replica_user(user)
        # how to run the replica's Python as that user (or the path in its way), found once
        self._runner_as_user = runner_command(self.user) if self.user is not None else None
        self._home: Path | None = None  # the replica user's home, made on first start
        self._warned: set[tuple[str, Path]] = set()
        if self.user is not None:
            remove_orphaned_homes()
        self.state_dir = state_dir or aquatope_home()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir = self.state_dir / "logs"
        self.logs_dir.mkdir(exist_ok=True)
        if use_cgroups:
            remove_stale_groups()  # left by gateways that were killed
        self.cgroups: CgroupTree | None = detect(f"aquatope-{os.getpid()}") if use_cgroups else None
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._recorded: dict[str, dict[str, object]] = {}
        self._exits: dict[str, ExitStatus] = {}  # recent replicas that died by themselves

    @property
    def limits_enforced(self) -> bool:
        return self.cgroups is not None

    def _record(self) -> None:
        atomic_write_json(_pids_file(self.state_dir), self._recorded, indent=None)

    async def start_replica(
        self, spec: FunctionSpec, replica_id: str, limits: Limits
    ) -> ReplicaHandle:
        started_at = time.time()
        user = self._user_for(spec)
        command = self._runner_as_user if user is not None else runner_command(None)
        assert isinstance(command, tuple)  # _user_for checked the interpreter
        argv, runner_env = command
        env = self._environment(spec, user)
        env.update(runner_env)
        threads = max(1, int(limits.cpu_cores or 1))
        env.setdefault("OMP_NUM_THREADS", str(threads))
        env["AQUATOPE_SPAWN_TS"] = repr(started_at)
        env["AQUATOPE_FUNCTION"] = spec.name
        env["AQUATOPE_REPLICA_ID"] = replica_id
        env["PYTHONUNBUFFERED"] = "1"
        procs_files: list[str] = []
        if self.cgroups is not None:
            self.cgroups.create(replica_id)
            self.cgroups.set_limits(replica_id, limits)
            procs_files = sorted(
                {
                    str(self.cgroups.cpu_root / replica_id / "cgroup.procs"),
                    str(self.cgroups.memory_root / replica_id / "cgroup.procs"),
                }
            )
        log_path = self.logs_dir / f"{replica_id}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                "--handler",
                spec.handler,
                "--function",
                spec.name,
                "--port",
                "0",
                "--max-inflight",
                str(spec.max_inflight),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                cwd=spec.handler or None,
                preexec_fn=lambda: _child_setup(procs_files, user),
            )
        except OSError as exc:
            log.close()
            self._drop_cgroup(replica_id)
            raise DeployError(f"{spec.name}: cannot start replica: {exc}") from None
        except BaseException:  # e.g. ValueError for a NUL byte in the environment
            self._drop_cgroup(replica_id)
            raise
        finally:
            if not log.closed:
                log.close()
        self._procs[replica_id] = proc
        self._recorded[replica_id] = {"pid": proc.pid, "function": spec.name}
        self._record()
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
            ready = json.loads(line) if line else {}
        except (TimeoutError, json.JSONDecodeError):
            ready = {}
        if ready.get("event") != "ready":
            await self._kill(replica_id)
            tail = log_path.read_text(errors="replace")[-600:].strip().splitlines()
            reason = tail[-1] if tail else "exited before it was ready"
            raise DeployError(f"{spec.name}: replica failed to start: {reason}")
        ready_at = time.time()
        return ReplicaHandle(
            function=spec.name,
            replica_id=replica_id,
            address=f"http://127.0.0.1:{ready['port']}",
            started_at=started_at,
            ready_at=ready_at,
            startup_s=float(ready.get("startup_s", ready_at - started_at)),
            pid=proc.pid,
        )

    def _environment(self, spec: FunctionSpec, user: ReplicaUser | None) -> dict[str, str]:
        """A replica's environment before its own ``AQUATOPE_*`` variables: the gateway's,
        cleaned (:func:`replica_environment`), the function data's defaults, then the spec's.

        Function data (the trained models, the social network's database) default to the
        state directory for replicas running as the gateway's user and to the replica
        user's home (:func:`prepare_replica_home`) for the others.
        """
        env = replica_environment(os.environ)
        if user is None:
            data = self.state_dir
        else:
            if self._home is None:
                cache = Path(os.environ.get("AQUATOPE_MODEL_DIR") or self.state_dir / "models")
                self._home = prepare_replica_home(self.state_dir, user, cache)
            data = self._home
            env["HOME"] = str(data)
            env["USER"] = env["LOGNAME"] = user.name
        env.setdefault("AQUATOPE_MODEL_DIR", str(data / "models"))
        env.setdefault("SOCIAL_DB", str(data / "social" / "social.db"))
        env.update(spec.env)
        return env

    def _user_for(self, spec: FunctionSpec) -> ReplicaUser | None:
        """The user ``spec``'s replicas run as: :attr:`user` where it can reach everything
        the replica needs (:meth:`_out_of_reach`), else the gateway's own (with a warning
        once per function and path) or, for a user the operator named, a refusal.

        Raises:
            DeployError: the operator named the user and it cannot reach a path.
        """
        user = self.user
        if user is None:
            return None
        blocked = self._out_of_reach(spec, user)
        if blocked is None:
            return user
        if user.explicit:
            raise DeployError(
                f"{spec.name}: replicas run as {user.name} ($AQUATOPE_REPLICA_USER), "
                f"who cannot reach {blocked}; make it readable or choose another user"
            )
        if (spec.name, blocked) not in self._warned:
            self._warned.add((spec.name, blocked))
            _logger.warning(
                "%s: replicas run as the gateway's user, not %s, who cannot reach %s "
                "(make it readable by %s, or set $AQUATOPE_REPLICA_USER)",
                spec.name, user.name, blocked, user.name,
            )  # fmt: skip
        return None

    def _out_of_reach(self, spec: FunctionSpec, user: ReplicaUser) -> Path | None:
        """The first path a replica running as ``user`` needs but cannot reach: a Python
        to run (:func:`runner_command`), the testbed's package, its handler, and a model
        cache or database set in its environment instead of the home made for it."""
        if isinstance(self._runner_as_user, Path):
            return self._runner_as_user
        needs: list[tuple[str, str]] = [(str(_PACKAGE_ROOT), "rx")]
        if spec.handler:
            needs.append((spec.handler, "rx"))
        given = {**replica_environment(os.environ), **spec.env}
        if given.get("AQUATOPE_MODEL_DIR"):
            needs.append((given["AQUATOPE_MODEL_DIR"], "rwx"))
        if given.get("SOCIAL_DB"):
            needs.append((str(Path(given["SOCIAL_DB"]).parent), "rwx"))
        for path, want in needs:
            blocked = unreachable(path, user, want)
            if blocked is not None:
                return blocked
        return None

    async def _kill(self, replica_id: str) -> None:
        proc = self._procs.get(replica_id)
        code = _exit_code_now(proc) if proc is not None else None
        if code is not None:
            # it died by itself: keep why, for callers that ask after the clean-up
            self._exits[replica_id] = self._status_of(replica_id, code)
            while len(self._exits) > _EXITS_KEPT:
                self._exits.pop(next(iter(self._exits)))
        proc = self._procs.pop(replica_id, None)
        self._recorded.pop(replica_id, None)
        self._record()
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._drop_cgroup(replica_id)

    def _drop_cgroup(self, replica_id: str) -> None:
        """Remove a replica's cgroup (its process is gone, or never started)."""
        if self.cgroups is not None:
            self.cgroups.remove(replica_id)

    async def stop_replica(self, handle: ReplicaHandle) -> None:
        await self._kill(handle.replica_id)

    async def apply_limits(self, handle: ReplicaHandle, limits: Limits) -> LimitsOutcome:
        if self.cgroups is None:
            return LimitsOutcome(False, "no writable cgroup hierarchy: limits are advisory")
        self.cgroups.set_limits(handle.replica_id, limits)
        return LimitsOutcome(True, f"cgroup v{self.cgroups.version}")

    async def exit_status(self, handle: ReplicaHandle) -> ExitStatus | None:
        proc = self._procs.get(handle.replica_id)
        if proc is None:
            return self._exits.get(handle.replica_id, ExitStatus(False, "stopped"))
        code = _exit_code_now(proc)
        return None if code is None else self._status_of(handle.replica_id, code)

    def _status_of(self, replica_id: str, code: int) -> ExitStatus:
        oom = self.cgroups is not None and self.cgroups.oom_kills(replica_id) > 0
        if oom:
            detail = "OOM-killed (memory limit too small)"
        elif code < 0:
            detail = f"exited with code {code} (killed by {_signal_name(-code)})"
        else:
            detail = f"exited with code {code}"
        return ExitStatus(oom, detail)

    def peak_memory_mb(self, handle: ReplicaHandle) -> float | None:
        """The replica's cgroup peak where it has one, else the process's peak RSS (VmHWM)."""
        if self.cgroups is not None:
            peak = self.cgroups.peak_memory_mb(handle.replica_id)
            if peak is not None:
                return peak
        if handle.pid is None:
            return None
        try:
            for line in Path(f"/proc/{handle.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
        except (OSError, ValueError, IndexError):
            return None
        return None

    def is_alive(self, handle: ReplicaHandle) -> bool:
        """One ``waitid`` (no reaping): false once the process has exited, zombie or reaped."""
        proc = self._procs.get(handle.replica_id)
        if proc is None or proc.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None
        except ChildProcessError:
            return False  # reaped by asyncio's watcher; the return code is on its way

    async def wait_exit(self, handle: ReplicaHandle) -> ExitStatus:
        """The process's own exit notification, not a poll.

        A pidfd is readable the moment the process dies, and the event loop sees it in the
        same batch as the replica's closed sockets, so the gateway stops routing to it before
        it handles a request that arrived later. The exit code is read without reaping
        (``waitid`` with ``WNOWAIT``); asyncio's child watcher still reaps.
        """
        proc = self._procs.get(handle.replica_id)
        if proc is None:
            return self._exits.get(handle.replica_id, ExitStatus(False, "stopped"))
        code = await _wait_pidfd(proc) if proc.returncode is None else proc.returncode
        if code is None:
            code = await proc.wait()
        return self._status_of(handle.replica_id, code)

    async def close(self) -> None:
        for replica_id in list(self._procs):
            await self._kill(replica_id)
        if self.cgroups is not None:
            for root in {self.cgroups.cpu_root, self.cgroups.memory_root}:
                with contextlib.suppress(OSError):
                    root.rmdir()
        _pids_file(self.state_dir).unlink(missing_ok=True)
