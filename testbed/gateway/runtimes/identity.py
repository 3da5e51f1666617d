"""Which user local replicas run as: an unprivileged one when the gateway runs as root.

Function code is code the operator deploys, not code the gateway trusts: a replica running
as root could read the admin password (``$AQUATOPE_HOME/basic-auth-password``, mode 0600),
every other root file, and change the cgroup limits it is measured under. When the gateway
is root, each local replica therefore switches to ``$AQUATOPE_REPLICA_USER`` (default
``nobody``) after joining its cgroups and before it runs any function code.

A replica can only run as that user where the user can reach its code and data, so the
runtime checks the paths first (:func:`unreachable`, from the permission bits; ACLs are not
read). Where the user was only the default, a path out of reach makes that function's
replicas run as the gateway's user, with a warning naming the path; where the operator named
the user, the start is refused instead.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from testbed.core.errors import ConfigError

__all__ = [
    "DEFAULT_USER",
    "ENV_VAR",
    "ReplicaUser",
    "drop_privileges",
    "replica_user",
    "unreachable",
]

ENV_VAR = "AQUATOPE_REPLICA_USER"
DEFAULT_USER = "nobody"
_SAME_USER = ("", "self")  # values that keep replicas on the gateway's user


@dataclass(frozen=True)
class ReplicaUser:
    """The account replicas switch to.

    Attributes:
        name: the user name (for messages).
        uid, gid: its user and primary group ids.
        groups: every group it belongs to (its primary group included).
        explicit: named by the operator (``AQUATOPE_REPLICA_USER``): a path out of its reach
            refuses the start instead of falling back to the gateway's user.
    """

    name: str
    uid: int
    gid: int
    groups: frozenset[int]
    explicit: bool


def replica_user(setting: str | None = None, *, euid: int | None = None) -> ReplicaUser | None:
    """The user replicas switch to, or ``None`` to keep the gateway's.

    Args:
        setting: a user name or numeric uid; ``""`` or ``"self"`` keeps the gateway's user;
            default ``$AQUATOPE_REPLICA_USER``, else ``nobody`` when the gateway is root.
        euid: the gateway's effective uid (default: this process's).

    Raises:
        ConfigError: no such user, or a user other than the gateway's asked for by a gateway
            that is not root (only root can switch).
    """
    if setting is None:
        setting = os.environ.get(ENV_VAR)
    euid = os.geteuid() if euid is None else euid
    explicit = setting is not None
    value = (DEFAULT_USER if euid == 0 else "") if setting is None else setting.strip()
    if value in _SAME_USER:
        return None
    try:
        entry = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except (KeyError, OverflowError):
        raise ConfigError(f"{ENV_VAR}={value!r}: no such user on this machine") from None
    if entry.pw_uid == euid:
        return None
    if euid != 0:
        raise ConfigError(
            f"{ENV_VAR}={value!r}: only a gateway running as root can start replicas as "
            f"another user (this one runs as uid {euid}); unset it"
        )
    if entry.pw_uid == 0:
        return None
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return ReplicaUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, explicit)


def _allows(st: os.stat_result, user: ReplicaUser, want: str) -> bool:
    """Whether the mode bits give ``user`` every access in ``want`` (``r``, ``w``, ``x``),
    checked as the kernel does: owner bits for the owner, else group bits, else other."""
    if st.st_uid == user.uid:
        bits = {"r": stat.S_IRUSR, "w": stat.S_IWUSR, "x": stat.S_IXUSR}
    elif st.st_gid in user.groups:
        bits = {"r": stat.S_IRGRP, "w": stat.S_IWGRP, "x": stat.S_IXGRP}
    else:
        bits = {"r": stat.S_IROTH, "w": stat.S_IWOTH, "x": stat.S_IXOTH}
    return all(st.st_mode & bits[c] for c in want)


def unreachable(path: str | Path, user: ReplicaUser, want: str = "r") -> Path | None:
    """The first path on the way to ``path`` that ``user`` cannot pass, else ``None``.

    Every directory above ``path`` (symbolic links resolved) must let the user through
    (``x``), and ``path`` itself must give it ``want``. A ``path`` that does not exist yet is
    judged by its nearest existing parent, which must give ``w`` and ``x`` (to create it).
    """
    target = Path(path).resolve()
    while not target.exists():
        if target.parent == target:
            return target
        target, want = target.parent, "wx"
    for parent in reversed(target.parents):
        if not _allows(parent.stat(), user, "x"):
            return parent
    return None if _allows(target.stat(), user, want) else target


def drop_privileges(user: ReplicaUser) -> None:
    """Switch this process to ``user`` for good (groups, then gid, then uid).

    Meant for ``preexec_fn``. The kernel clears a parent-death signal when the credentials
    change, so set one after this.
    """
    os.setgroups(sorted(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
