"""Azure 2021 reader and per-minute counts: the edges the figures depend on.

Written against the mutation survivors of ``loadgen/traces/azure2021.py`` and
``loadgen/traces/counts.py`` (``scripts/mutation.py``): where time 0 and the window end fall,
names qualified by their app, which rows are skipped or refused and with which message, how
counts are selected (by name, trigger, top, seeded sample), summarised and expanded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from loadgen.trace import FunctionInfo
from loadgen.traces.azure2021 import read_azure2021
from loadgen.traces.counts import MinuteCounts
from testbed.core.errors import ConfigError

HEAD = "app,func,end_timestamp,duration\n"


def _file(tmp_path: Path, body: str, name: str = "inv2021.txt") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


# --------------------------------------------------------------------------- Azure 2021


def test_2021_time_zero_is_the_earliest_arrival_rounded_down_to_a_minute(tmp_path: Path) -> None:
    # ended 0.5 s into the trace after running 61 s: it arrived at -60.5 s, so time 0 is -120 s
    path = _file(tmp_path, HEAD + "a1,f1,0.5,61.0\na1,f1,10,0\n")
    tr = read_azure2021(path)
    assert tr.arrivals_s["f1"].tolist() == [59.5, 130.0]
    assert tr.duration_s == 180.0
    assert tr.info["f1"].avg_duration_s == pytest.approx(30.5)  # a zero duration is valid


def test_2021_arrivals_after_zero_keep_their_times(tmp_path: Path) -> None:
    # the first arrival is past the first minute: time 0 stays the trace's start
    path = _file(tmp_path, HEAD + "a1,f1,75.0,1.0\na1,f1,200,0.5\n")
    tr = read_azure2021(path)
    assert tr.arrivals_s["f1"].tolist() == [74.0, 199.5]
    assert tr.duration_s == 240.0


def test_2021_default_window_ends_at_the_minute_after_the_last_arrival(tmp_path: Path) -> None:
    # an arrival exactly on a minute boundary opens that minute
    path = _file(tmp_path, HEAD + "a1,f1,61.0,0.5\na1,f1,120.0,0\n")
    tr = read_azure2021(path)
    assert tr.duration_s == 180.0
    assert tr.arrivals_s["f1"].tolist() == [60.5, 120.0]


def test_2021_given_duration_drops_arrivals_at_or_after_it(tmp_path: Path) -> None:
    path = _file(tmp_path, HEAD + "a1,f1,10,1\na1,f1,31,1\na1,f1,50,4\n")
    tr = read_azure2021(path, duration_s=30.0)
    assert tr.duration_s == 30.0
    assert tr.arrivals_s["f1"].tolist() == [9.0]  # 30.0 is outside [0, 30)
    assert tr.info["f1"].avg_duration_s == pytest.approx(2.0)  # over every row of the file


def test_2021_one_function_name_in_two_apps_is_qualified_by_its_app(tmp_path: Path) -> None:
    path = _file(tmp_path, HEAD + "a1,f,10,1\na2,f,20,1\na2,f,30,3\na1,g,40,1\n")
    tr = read_azure2021(path)
    assert tr.functions == ("a1/f", "a2/f", "g")
    assert tr.arrivals_s["a2/f"].tolist() == [19.0, 27.0]
    assert {n: i.app for n, i in tr.info.items()} == {"a1/f": "a1", "a2/f": "a2", "g": "a1"}
    assert tr.info["a2/f"].avg_duration_s == pytest.approx(2.0)


def test_2021_blank_lines_are_skipped_not_the_end(tmp_path: Path) -> None:
    path = _file(tmp_path, HEAD + "a1,f1,10,0\n\na1,f1,20,0\n\n")
    assert read_azure2021(path).arrivals_s["f1"].tolist() == [10.0, 20.0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "line 1, column 1: empty file, expected a header"),
        ("app,func\n", "line 1, column 3: expected header 'end_timestamp', got '<missing>'"),
        (HEAD, "no invocations"),
        (HEAD + "a1,f1,10,0.5,x\n", "line 2, column 5: expected 4 fields, got 5"),
        (HEAD + ",f1,10,0.5\n", "line 2, column 1: empty app"),
        (HEAD + "a1, ,10,0.5\n", "line 2, column 2: empty func"),
        (HEAD + "a1,f1,ten,0.5\n", "line 2, column 3: end_timestamp must be a number, got 'ten'"),
        (
            HEAD + "a1,f1,10,0\na1,f1,10,-1\n",
            "line 3, column 4: duration must be a non-negative number, got '-1'",
        ),
        (
            HEAD + "a1,f1,10,nan\n",
            "line 2, column 4: duration must be a non-negative number, got 'nan'",
        ),
        (  # a field beyond the csv module's size limit
            HEAD + "a1,f1," + "9" * 200_000 + ",0\n",
            "line 2: field larger than field limit (131072)",
        ),
    ],
)
def test_2021_refusals_name_the_file_line_and_column(
    tmp_path: Path, body: str, message: str
) -> None:
    path = _file(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        read_azure2021(path)
    assert str(err.value) == f"{path}: {message}"


def test_2021_a_missing_file_says_why(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(ConfigError) as err:
        read_azure2021(path)
    assert str(err.value) == f"{path}: cannot read: No such file or directory"


def test_2021_top_and_seeded_sample_select_like_the_trace_does(tmp_path: Path) -> None:
    # f00 .. f11, function i called i + 1 times
    rows = "".join(f"a,f{i:02d},{10 + i},0\n" for i in range(12) for _ in range(i + 1))
    path = _file(tmp_path, HEAD + rows)
    tr = read_azure2021(path)
    assert tr.source == "inv2021.txt" and len(tr.functions) == 12
    assert tr.sample(3, seed=0).functions != tr.sample(3, seed=1).functions  # the seed matters
    assert read_azure2021(path, sample=3).functions == tr.sample(3, seed=0).functions
    for seed in (1, 2, 3):
        assert read_azure2021(path, sample=3, seed=seed).functions == (
            tr.sample(3, seed=seed).functions
        )
    picked = read_azure2021(path, top=5, sample=2, seed=4)
    assert picked.functions == tr.top(5).sample(2, seed=4).functions
    assert set(picked.functions) <= {"f07", "f08", "f09", "f10", "f11"}


# --------------------------------------------------------------------------- MinuteCounts


def test_counts_refuse_bad_shapes_and_names_with_their_message() -> None:
    cases: list[tuple[tuple[str, ...], np.ndarray, str]] = [
        (
            ("a", "b"),
            np.zeros((1, 3), dtype=np.int64),
            "counts must have shape (functions, minutes), got (1, 3) for 2 functions",
        ),
        (
            ("a",),
            np.zeros(3, dtype=np.int64),
            "counts must have shape (functions, minutes), got (3,) for 1 functions",
        ),
        (("a",), np.zeros((1, 0), dtype=np.int64), "counts need at least one minute"),
        (("a", "a"), np.zeros((2, 1), dtype=np.int64), "function names must be unique"),
    ]
    for names, counts, message in cases:
        with pytest.raises(ConfigError) as err:
            MinuteCounts(names, counts)
        assert str(err.value) == message
    assert MinuteCounts(("a",), np.array([[3]])).minutes == 1  # one minute is enough


def test_counts_summary_busiest_first_with_idle_gaps_and_burstiness() -> None:
    counts = MinuteCounts(
        ("b", "a", "c", "z"),
        np.array(
            [
                [2, 1, 0, 1, 0, 0, 0, 4],  # 8 calls; busy minutes 0, 1, 3, 7
                [8, 0, 0, 0, 0, 0, 0, 0],  # 8 calls (a tie: kept in name order), one minute
                [0, 1, 0, 0, 0, 0, 0, 1],  # 2 calls, 6 minutes apart
                [0, 0, 0, 0, 0, 0, 0, 0],  # never called
            ]
        ),
        {"b": FunctionInfo(trigger="timer"), "c": FunctionInfo(trigger="http")},
        "made here",
    )
    rows = counts.summary()
    assert [(r.name, r.count, r.trigger) for r in rows] == [
        ("b", 8, "timer"),
        ("a", 8, ""),
        ("c", 2, "http"),
        ("z", 0, ""),
    ]
    nan = math.nan
    got = [(r.rate_per_min, r.idle_p50_s, r.idle_p90_s, r.idle_p99_s, r.cv) for r in rows]
    want = [
        (1.0, 120.0, 216.0, 237.6, math.sqrt(1.75)),  # gaps 60, 120, 240 s
        (1.0, nan, nan, nan, math.sqrt(7.0)),  # no gap
        (0.25, 360.0, 360.0, 360.0, math.sqrt(3.0)),
        (0.0, nan, nan, nan, nan),  # no mean to divide by
    ]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, nan_ok=True)


def _eight() -> MinuteCounts:
    """Functions ``a`` .. ``h``, function i called i + 1 times in minute 0 of two."""
    names = tuple("abcdefgh")
    counts = np.array([[i + 1, 0] for i in range(8)], dtype=np.int64)
    info = {
        "a": FunctionInfo(app="app-a", trigger="http"),
        "b": FunctionInfo(trigger="timer"),
        "c": FunctionInfo(app="app-c", trigger="queue"),
    }
    return MinuteCounts(names, counts, info, "eight.csv")


def test_counts_subset_by_name_keeps_the_order_given_and_their_info() -> None:
    picked = _eight().subset(functions=["c", "f", "a"])
    assert picked.names == ("c", "f", "a")
    assert picked.counts[:, 0].tolist() == [3, 6, 1]
    assert picked.info == {"c": _eight().info["c"], "a": _eight().info["a"]}
    assert picked.source == "eight.csv"
    # a sample of at least as many as are selected keeps the selection as it is
    assert _eight().subset(functions=["c", "a"], sample=2).names == ("c", "a")
    assert _eight().subset(functions=["c", "a"], sample=5).names == ("c", "a")


def test_counts_subset_refusals_name_what_is_missing() -> None:
    with pytest.raises(ConfigError) as err:
        _eight().subset(functions=["a", "u", "v", "w", "x", "y", "z"])
    assert str(err.value) == "eight.csv: no function(s) u, v, w, x, y"  # the first five
    nothing: list[Callable[[], MinuteCounts]] = [
        lambda: _eight().subset(functions=[]),
        lambda: _eight().subset(functions=[], top=2),
        lambda: _eight().subset(triggers=["cron"]),
    ]
    for select in nothing:
        with pytest.raises(ConfigError) as err:
            select()
        assert str(err.value) == "eight.csv: the selection keeps no function"


def test_counts_subset_by_trigger_ignores_case_and_functions_without_info() -> None:
    assert _eight().subset(triggers=["HTTP", "Queue"]).names == ("a", "c")
    assert _eight().subset(triggers=["queue", "timer"], top=1).names == ("c",)


def test_counts_subset_sample_is_numpys_seeded_choice_in_name_order() -> None:
    counts = _eight()
    for seed in (0, 1, 2, 3):
        idx = np.sort(np.random.default_rng(seed).choice(np.arange(8), size=3, replace=False))
        assert counts.subset(sample=3, seed=seed).names == tuple("abcdefgh"[i] for i in idx)
    assert counts.subset(sample=3).names == counts.subset(sample=3, seed=0).names
    assert counts.subset(sample=3, seed=0).names != counts.subset(sample=3, seed=1).names
    many = [counts.subset(sample=7, seed=s).names for s in range(5)]
    assert all(len(set(n)) == 7 for n in many)  # drawn without replacement


def test_counts_to_trace_defaults_to_seeded_poisson_without_info() -> None:
    counts = MinuteCounts(("solo",), np.array([[3, 0, 2]]), {}, "made here")
    tr = counts.to_trace()
    assert tr.source == "made here" and tr.duration_s == 180.0
    assert tr.arrivals_s["solo"].tolist() == (
        counts.to_trace(spread="poisson", seed=0).arrivals_s["solo"].tolist()
    )
    assert tr.arrivals_s["solo"].tolist() != (
        counts.to_trace(spread="poisson", seed=1).arrivals_s["solo"].tolist()
    )
    with pytest.raises(ConfigError) as err:
        counts.to_trace(spread="uniform")  # type: ignore[arg-type]
    assert str(err.value) == "spread must be 'poisson' or 'even', got 'uniform'"


def test_counts_poisson_arrivals_fill_their_minute_and_no_more() -> None:
    counts = MinuteCounts(("f",), np.array([[2000, 2000]]))
    times = counts.to_trace(seed=3).arrivals_s["f"]
    first, second = times[:2000], times[2000:]
    assert first.min() >= 0.0 and first.max() < 60.0 and first.max() > 59.0
    assert second.min() >= 60.0 and second.max() < 120.0 and second.min() < 61.0


def test_counts_even_spread_places_the_kth_of_c_calls_at_k_plus_half_over_c() -> None:
    counts = MinuteCounts(("f",), np.array([[1, 0, 4]]))
    times = counts.to_trace(spread="even").arrivals_s["f"].tolist()
    assert times == [30.0, 127.5, 142.5, 157.5, 172.5]


def test_counts_max_arrivals_is_inclusive_and_says_what_to_do() -> None:
    counts = MinuteCounts(("f", "g"), np.array([[3, 1], [2, 0]]), {}, "src.csv")
    assert counts.to_trace(max_arrivals=6).total == 6
    with pytest.raises(ConfigError) as err:
        counts.to_trace(max_arrivals=5)
    assert str(err.value) == (
        "src.csv: 6 invocations exceed max_arrivals=5; "
        "select fewer functions (top/sample/triggers) first"
    )
