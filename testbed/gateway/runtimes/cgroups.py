"""CPU and memory limits for plain processes through Linux cgroups (v1 or v2).

Groups are created below the cgroup this process already lives in (so a delegated
subtree works), one per replica. When no writable hierarchy exists, :func:`detect`
returns ``None`` and callers report limits as advisory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.core.config import Limits
from testbed.core.errors import DeployError

__all__ = ["CgroupTree", "detect", "memory_peak_file", "read_peak_mb", "remove_stale_groups"]

CPU_PERIOD_US = 100_000
_ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str, pid: int | str = "self") -> str:
    """The cgroup path of process ``pid`` for ``controller`` ('' for the v2 unified entry)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path
    return "/"


def memory_peak_file(pid: int) -> Path | None:
    """The file holding the peak memory use of the cgroup that process ``pid`` lives in
    (a container's init, say), or None when this process cannot see it (another pid or
    cgroup namespace, no memory controller)."""
    v1 = _ROOT / "memory"
    if v1.is_dir():
        path = _own_path("memory", pid)
        candidate = v1 / path.lstrip("/") / "memory.max_usage_in_bytes"
    else:
        path = _own_path("", pid)
        candidate = _ROOT / path.lstrip("/") / "memory.peak"
    return candidate if path != "/" and candidate.is_file() else None


def read_peak_mb(path: Path) -> float | None:
    """MB in a ``memory.max_usage_in_bytes`` or ``memory.peak`` file, None if unreadable."""
    try:
        return int(path.read_text()) / 2**20
    except (OSError, ValueError):
        return None


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


@dataclass(frozen=True)
class CgroupTree:
    """Where replica groups go: v1 has separate cpu and memory roots, v2 one root."""

    version: int
    cpu_root: Path
    memory_root: Path

    def create(self, name: str) -> None:
        for root in {self.cpu_root, self.memory_root}:
            (root / name).mkdir(parents=True, exist_ok=True)

    def add_process(self, name: str, pid: int) -> None:
        for root in {self.cpu_root, self.memory_root}:
            (root / name / "cgroup.procs").write_text(str(pid))

    def set_limits(self, name: str, limits: Limits) -> None:
        """Write CPU quota and memory limit; unlimited fields are reset to max.

        Raises:
            DeployError: the kernel refused (e.g. memory below current usage).
        """
        cpu = self.cpu_root / name
        mem = self.memory_root / name
        try:
            if self.version == 1:
                (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                quota = -1 if limits.cpu_cores is None else int(limits.cpu_cores * CPU_PERIOD_US)
                (cpu / "cpu.cfs_quota_us").write_text(str(max(quota, 1000) if quota > 0 else -1))
                self._set_memory_v1(mem, limits.memory_mb)
            else:
                quota_text = (
                    "max"
                    if limits.cpu_cores is None
                    else str(max(int(limits.cpu_cores * CPU_PERIOD_US), 1000))
                )
                (cpu / "cpu.max").write_text(f"{quota_text} {CPU_PERIOD_US}")
                value = "max" if limits.memory_mb is None else str(limits.memory_mb * 1024 * 1024)
                (mem / "memory.max").write_text(value)
                swap = mem / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.EINVAL):
                raise DeployError(
                    f"kernel refused memory limit {limits.memory_mb} MiB for {name}: current "
                    "usage is higher; the old limit stays"
                ) from None
            raise DeployError(f"cannot set limits for {name}: {exc}") from None

    @staticmethod
    def _set_memory_v1(mem: Path, memory_mb: int | None) -> None:
        limit = -1 if memory_mb is None else memory_mb * 1024 * 1024
        memsw = mem / "memory.memsw.limit_in_bytes"
        current = int((mem / "memory.limit_in_bytes").read_text())
        # memsw must stay >= limit: order the two writes by direction of the change.
        if limit == -1 or limit > current:
            if memsw.exists():
                memsw.write_text(str(limit))
            (mem / "memory.limit_in_bytes").write_text(str(limit))
        else:
            (mem / "memory.limit_in_bytes").write_text(str(limit))
            if memsw.exists():
                memsw.write_text(str(limit))

    def read_cpu_quota(self, name: str) -> float | None:
        """Current CPU limit in cores (``None`` = unlimited)."""
        if self.version == 1:
            quota = int((self.cpu_root / name / "cpu.cfs_quota_us").read_text())
            period = int((self.cpu_root / name / "cpu.cfs_period_us").read_text())
            return None if quota < 0 else quota / period
        quota_text, period_text = (self.cpu_root / name / "cpu.max").read_text().split()
        return None if quota_text == "max" else int(quota_text) / int(period_text)

    def peak_memory_mb(self, name: str) -> float | None:
        """Peak memory use of the group so far (MB), or None when the kernel does not say."""
        return read_peak_mb(
            self.memory_root
            / name
            / ("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak")
        )

    def oom_kills(self, name: str) -> int:
        """How many processes the kernel OOM-killed in this group."""
        path = (
            self.memory_root
            / name
            / ("memory.oom_control" if self.version == 1 else "memory.events")
        )
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return 0
        return 0

    def remove(self, name: str) -> None:
        for root in {self.cpu_root, self.memory_root}:
            with contextlib.suppress(OSError):
                (root / name).rmdir()


def detect(prefix: str = "aquatope") -> CgroupTree | None:
    """Find a writable cgroup hierarchy with CPU and memory control, or ``None``."""
    if (_ROOT / "cgroup.controllers").exists():
        own = _own_path("").lstrip("/")
        base = _ROOT / own
        controllers = (base / "cgroup.controllers").read_text().split() if own else []
        root_controllers = (_ROOT / "cgroup.controllers").read_text().split()
        available = controllers or root_controllers
        if {"cpu", "memory"} <= set(available):
            root = base / prefix
            if _writable_dir(root):
                try:
                    (root / "cgroup.subtree_control").write_text("+cpu +memory")
                except OSError:
                    return None
                return CgroupTree(2, root, root)
        return None
    cpu_base = _ROOT / "cpu"
    mem_base = _ROOT / "memory"
    if not (cpu_base / "cpu.cfs_quota_us").exists() or not (mem_base / "cgroup.procs").exists():
        return None
    cpu_root = cpu_base / _own_path("cpu").lstrip("/") / prefix
    mem_root = mem_base / _own_path("memory").lstrip("/") / prefix
    if _writable_dir(cpu_root) and _writable_dir(mem_root):
        return CgroupTree(1, cpu_root, mem_root)
    return None


_OWNER_PREFIX = "aquatope-"


def _owner_dead(name: str) -> bool:
    """``aquatope-<pid>`` whose gateway pid no longer runs (a gateway that crashed)."""
    suffix = name[len(_OWNER_PREFIX) :]
    if not name.startswith(_OWNER_PREFIX) or not suffix.isdigit():
        return False
    try:
        os.kill(int(suffix), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _parent_dirs() -> set[Path]:
    """Where :func:`detect` creates ``aquatope-<pid>`` groups for this process's cgroups."""
    if (_ROOT / "cgroup.controllers").exists():
        return {_ROOT / _own_path("").lstrip("/")}
    return {
        _ROOT / controller / _own_path(controller).lstrip("/") for controller in ("cpu", "memory")
    }


def _remove_group(group: Path) -> bool:
    """Kill what is left inside ``group`` (orphaned replicas), then remove it bottom-up."""
    children = sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for cgroup in [*children, group]:
        with contextlib.suppress(OSError):
            for pid in (cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for _ in range(100):  # a killed process leaves its group a moment later
            try:
                cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    return False
                time.sleep(0.01)
        else:
            return False
    return True


def remove_stale_groups(parents: set[Path] | None = None) -> int:
    """Remove ``aquatope-<pid>`` groups (and their replica groups) of gateways that died.

    A gateway removes its groups on a clean shutdown; after a SIGKILL they stay. ``up``,
    gateway start and ``down`` call this. Groups of a live pid are left alone.

    Args:
        parents: directories to scan (default: where this process's groups would go).

    Returns:
        The number of owner groups removed.
    """
    removed = 0
    for parent in parents if parents is not None else _parent_dirs():
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir() and _owner_dead(entry.name) and _remove_group(entry):
                removed += 1
    return removed
