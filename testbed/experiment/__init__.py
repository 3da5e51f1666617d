"""Experiments: config loading, the runner, and the one writer/reader of results directories.

Modules: ``spec`` (YAML → :class:`~testbed.experiment.spec.ExperimentSpec`), ``workload``
(the trace of one seed), ``run`` (policies × seeds on a live or simulated platform),
``sampler`` (resource timeline), ``results`` (the results-directory schema of
``docs/results.md``) and ``facts`` (versions and machine facts saved with every run).
"""

from __future__ import annotations

__all__: list[str] = []
