"""Linux ``PR_SET_PDEATHSIG``: make a child process die when its parent does."""

from __future__ import annotations

import contextlib
import ctypes

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(signal_number: int) -> None:
    """Ask the kernel to send ``signal_number`` to this process when its parent exits.

    Meant for ``preexec_fn`` (runs in the child between fork and exec). A no-op where
    ``prctl`` is unavailable.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal_number)
