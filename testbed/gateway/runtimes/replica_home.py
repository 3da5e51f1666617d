"""Where replicas that run as another user keep their data: a home the gateway makes for them.

Replicas write two things: the social network's SQLite database and the ml-pipeline's
trained models. Under the gateway's state directory they would sit next to the admin
password, usually inside root's home, which an unprivileged user cannot enter. So the
runtime gives them a home of their own: ``STATE/replica-data`` when the user can reach the
state directory, else ``$TMPDIR/aquatope-replicas-<hash of STATE>`` (one per state
directory, so the data outlive a gateway restart), owned by that user, mode 0700, with
``models/`` seeded from the gateway's own model cache (training them again costs seconds
per cold start). Homes whose state directory is gone are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from testbed.core.errors import DeployError
from testbed.gateway.runtimes.identity import ReplicaUser, unreachable

__all__ = ["prepare_replica_home", "remove_orphaned_homes"]

_PREFIX = "aquatope-replicas-"
_OWNER_FILE = ".state-dir"  # which state directory a home belongs to


def _home_for(state_dir: Path, user: ReplicaUser) -> Path:
    if unreachable(state_dir, user, "x") is None:
        return state_dir / "replica-data"
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"{_PREFIX}{digest}"


def _own_dir(path: Path, user: ReplicaUser) -> None:
    """``path`` as a real directory (never a link someone planted), owned by ``user``, 0700."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid not in (0, user.uid):
        raise DeployError(f"replica home {path} is not a directory owned by root or {user.name}")
    os.chown(path, user.uid, user.gid)
    path.chmod(0o700)


def prepare_replica_home(state_dir: Path, user: ReplicaUser, model_cache: Path) -> Path:
    """The home of ``user``'s replicas for this state directory, created and seeded.

    Args:
        state_dir: the gateway's state directory.
        user: the account the replicas run as.
        model_cache: the gateway's own trained-model cache; files missing from the home's
            ``models/`` are copied from it.

    Raises:
        DeployError: the home exists but is not a directory owned by root or ``user``.
    """
    home = _home_for(state_dir, user)
    _own_dir(home, user)
    (home / _OWNER_FILE).write_text(str(state_dir.resolve()))
    for sub in ("models", "social"):
        _own_dir(home / sub, user)
    if model_cache.is_dir():
        for src in model_cache.glob("*.bin"):
            dst = home / "models" / src.name
            if not dst.exists():
                shutil.copyfile(src, dst)
                os.chown(dst, user.uid, user.gid)
    return home


def remove_orphaned_homes() -> int:
    """Remove homes in the temporary directory whose state directory no longer exists."""
    removed = 0
    for home in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        with contextlib.suppress(OSError):
            owner = Path((home / _OWNER_FILE).read_text().strip())
            if not owner.exists() and not home.is_symlink():
                shutil.rmtree(home)
                removed += 1
    return removed
