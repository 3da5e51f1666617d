"""Run :func:`loadgen.replay` in a fresh Python process (Locust gevent-patches its process).

``multiprocessing`` children inherit gevent's patched threads badly (queues hang at exit), so
this starts ``python -m loadgen.child ARGS`` with pickled arguments and reads the result back
from ``loadgen.json``.
"""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadgen.options import DEFAULT_REPLAY_OPTIONS, ReplayOptions
from loadgen.plan import Plan
from loadgen.run import ReplayResult
from testbed.core.errors import TestbedError

__all__ = ["replay_in_child"]


def replay_in_child(
    plan_: Plan,
    target_url: str,
    results_dir: str | Path,
    options: ReplayOptions = DEFAULT_REPLAY_OPTIONS,
    *,
    wall_timeout_s: float | None = None,
) -> ReplayResult:
    """:func:`loadgen.replay` in a child process (progress is not reported across processes).

    Args:
        plan_, target_url, results_dir, options: as for :func:`loadgen.replay`.
        wall_timeout_s: kill the child after this long (default: no limit).

    Returns:
        The child's :class:`ReplayResult`.

    Raises:
        TestbedError: the child failed (its last stderr lines are in the message).
    """
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    args_path = out / ".replay-args.pickle"
    args_path.write_bytes(pickle.dumps((plan_, target_url, str(out), options)))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "loadgen.child", str(args_path)],
            capture_output=True,
            text=True,
            timeout=wall_timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TestbedError(f"load generator did not finish within {wall_timeout_s} s") from None
    finally:
        args_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise TestbedError(f"load generator exited with {proc.returncode}: {tail}")
    data: dict[str, Any] = json.loads((out / "loadgen.json").read_text())
    clean: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in data.items()}
    return ReplayResult(**clean)


def _main(argv: list[str]) -> int:
    from loadgen.run import replay
    from testbed.core.errors import ConfigError

    the_plan, url, out, options = pickle.loads(Path(argv[0]).read_bytes())
    try:
        replay(the_plan, url, out, options)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
