"""A run's metrics are cached beside it, and the cache is used only while it is current."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testbed.experiment.results import load_run
from testbed.report.compare import load_metrics
from testbed.report.metrics import compute_metrics
from testbed.report.metrics_cache import CACHE_FILE, load_run_metrics


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object) -> None:
        raise AssertionError(f"read {path} although its metrics were cached")

    monkeypatch.setattr("testbed.experiment.results.load_run", refuse)


def test_the_second_load_comes_from_the_cache_and_equals_the_first(
    crafted_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_run_metrics(crafted_run)
    assert (crafted_run / CACHE_FILE).is_file()
    assert first.headline() == compute_metrics(load_run(crafted_run)).headline()
    _no_reads(monkeypatch)
    again = load_run_metrics(crafted_run)
    assert again.violations == first.violations == 3
    assert again.cost == first.cost and again.latency_s == first.latency_s
    assert again.label == "p" and again.seed == 1 and again.path == str(crafted_run)


def test_a_changed_run_file_is_computed_again(crafted_run: Path) -> None:
    before = load_run_metrics(crafted_run)
    requests = crafted_run / "requests.csv"
    lines = requests.read_text().splitlines()
    requests.write_text("\n".join(lines[:-1]) + "\n")  # the timed-out request is gone
    after = load_run_metrics(crafted_run)
    assert (before.requests, before.violations) == (4, 3)
    assert (after.requests, after.violations) == (3, 2)


def test_a_cache_of_other_code_or_a_corrupt_one_is_ignored_and_replaced(
    crafted_run: Path,
) -> None:
    load_run_metrics(crafted_run)
    cache = crafted_run / CACHE_FILE
    raw = json.loads(cache.read_text())
    raw["key"]["code"] = "older-metrics"
    raw["metrics"]["violations"] = 99
    cache.write_text(json.dumps(raw))
    assert load_run_metrics(crafted_run).violations == 3
    cache.write_text('{"key": ')  # cut short
    assert load_run_metrics(crafted_run).violations == 3
    assert json.loads(cache.read_text())["metrics"]["violations"] == 3


def test_a_moved_run_reports_where_it_is_now(crafted_run: Path, tmp_path: Path) -> None:
    load_run_metrics(crafted_run)
    moved = tmp_path / "elsewhere"
    os.rename(crafted_run, moved)
    assert load_run_metrics(moved).path == str(moved)


def test_a_run_that_cannot_be_written_to_is_measured_without_a_cache(
    crafted_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(**_kw: object) -> None:
        raise PermissionError(13, "Permission denied", str(crafted_run))

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    assert load_run_metrics(crafted_run).violations == 3
    assert not (crafted_run / CACHE_FILE).exists()


def test_load_metrics_finds_runs_without_listing_the_cache(crafted_run: Path) -> None:
    load_metrics([crafted_run.parent])
    runs = load_metrics([crafted_run.parent])
    assert [r.seed for r in runs] == [1]
    assert not any(".tmp" in p.name for p in crafted_run.iterdir())
