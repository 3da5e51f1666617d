"""Run small torch models on one intra-op thread (shared by forecasters and configurators)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["single_thread"]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous count afterwards.

    Models of a few hundred points are far too small for parallel kernels: on a loaded
    2-core machine two threads made a 40-iteration GP fit take 5.5 s instead of 0.12 s, and
    the reduction order of multi-threaded kernels makes results differ from run to run.
    """
    import torch

    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
