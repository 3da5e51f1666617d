"""The Python a replica runs: the gateway's own, or one the replica's user can reach.

A replica normally runs ``sys.executable -m testbed.runner``. When it switches to an
unprivileged user (:mod:`.identity`) that user must be able to run that interpreter and read
its standard library; an interpreter installed in root's home (pyenv's default) is out of its
reach. Then the replica runs a system interpreter of the same version (``/usr/bin/python3.11``
for a 3.11 gateway: extension modules built for 3.11 load in any 3.11) with the gateway's
site-packages added as site directories, so it imports exactly the packages the gateway does.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import sysconfig
from pathlib import Path

from testbed.gateway.runtimes.identity import ReplicaUser, unreachable

__all__ = ["SITE_DIRS_VAR", "runner_command"]

SITE_DIRS_VAR = "AQUATOPE_RUNNER_SITE_DIRS"
# run in the other interpreter: add the gateway's site-packages, then the runner as ``-m`` would
_BOOTSTRAP = (
    "import os, runpy, site, sys\n"
    f"for d in os.environ.pop({SITE_DIRS_VAR!r}).split(os.pathsep): site.addsitedir(d)\n"
    "sys.argv[0] = 'testbed.runner'\n"
    "runpy.run_module('testbed.runner', run_name='__main__', alter_sys=True)\n"
)


def _stdlib_of(python: Path) -> Path:
    """Where ``python`` (a ``bin/pythonX.Y`` of a standard layout) keeps its standard library."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return python.resolve().parent.parent / "lib" / version


def _reachable(python: Path, user: ReplicaUser) -> bool:
    return (
        unreachable(python, user, "x") is None
        and unreachable(_stdlib_of(python), user, "rx") is None
    )


def runner_command(user: ReplicaUser | None) -> tuple[list[str], dict[str, str]] | Path:
    """How to start ``testbed.runner`` as ``user``: ``(argv prefix, extra environment)``, or
    the path that stops ``user`` from running any suitable interpreter.

    ``user=None`` (no switch) is always the gateway's own interpreter.
    """
    own = [sys.executable, "-m", "testbed.runner"]
    if user is None or _reachable(Path(sys.executable), user):
        return own, {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path("/usr/bin") / version, Path("/usr/local/bin") / version]
    found = shutil.which(version)
    if found:
        candidates.append(Path(found))
    site_dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    if not site_dirs:
        site_dirs = [sysconfig.get_path("purelib")]
    for python in candidates:
        if python.exists() and _reachable(python, user):
            for folder in site_dirs:
                blocked = unreachable(folder, user, "rx")
                if blocked is not None:
                    return blocked
            return [str(python), "-c", _BOOTSTRAP], {SITE_DIRS_VAR: os.pathsep.join(site_dirs)}
    blocked = unreachable(sys.executable, user, "x")
    return blocked or unreachable(_stdlib_of(Path(sys.executable)), user, "rx") or Path(version)
