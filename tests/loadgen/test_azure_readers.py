"""Azure 2019 and 2021 readers on small files written here, including broken ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadgen.traces import detect_format, read_trace
from loadgen.traces.azure2019 import (
    read_azure2019,
    read_azure2019_counts,
    write_azure2019,
    write_azure2019_durations,
)
from loadgen.traces.azure2021 import read_azure2021
from loadgen.traces.counts import MinuteCounts
from testbed.core.errors import ConfigError

HEADER = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 1441))


def _day(path: Path, rows: list[tuple[str, str, str, str, dict[int, int]]]) -> Path:
    lines = [HEADER]
    for owner, app, func, trig, counts in rows:
        minutes = [str(counts.get(m, 0)) for m in range(1, 1441)]
        lines.append(",".join([owner, app, func, trig, *minutes]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def two_days(tmp_path: Path) -> list[Path]:
    d1 = _day(
        tmp_path / "invocations_per_function_md.anon.d01.csv",
        [
            ("o1", "a1", "f1", "http", {1: 3, 2: 1}),
            ("o1", "a1", "f2", "timer", {m: 1 for m in range(1, 1441, 10)}),
        ],
    )
    d2 = _day(
        tmp_path / "invocations_per_function_md.anon.d02.csv",
        [
            ("o1", "a1", "f1", "http", {1440: 2}),
            ("o2", "a2", "f3", "queue", {5: 7}),
        ],
    )
    (tmp_path / "function_durations_percentiles.anon.d01.csv").write_text(
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum\no1,a1,f1,250,4,1,900\n"
    )
    (tmp_path / "app_memory_percentiles.anon.d01.csv").write_text(
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no1,a1,10,170.5\n"
    )
    return [d2, d1]  # out of order on purpose


def test_days_are_joined_in_day_order(two_days: list[Path]) -> None:
    counts = read_azure2019_counts(two_days)
    assert counts.minutes == 2880
    assert set(counts.names) == {"f1", "f2", "f3"}
    row = dict(zip(counts.names, counts.counts, strict=True))
    assert row["f1"][0] == 3 and row["f1"][1] == 1 and row["f1"][2879] == 2
    assert row["f2"][1440:].sum() == 0  # missing on day 2 -> zeros
    assert row["f3"][1440 + 4] == 7


def test_percentile_files_beside_are_used(two_days: list[Path]) -> None:
    info = read_azure2019_counts(two_days).info
    assert info["f1"].avg_duration_s == pytest.approx(0.25)
    assert info["f1"].memory_mb == pytest.approx(170.5)
    assert info["f3"].avg_duration_s is None and info["f2"].trigger == "timer"


def test_arrivals_fall_inside_their_minute(two_days: list[Path]) -> None:
    tr = read_azure2019(two_days, seed=1)
    assert tr.duration_s == 2880 * 60
    f1 = tr.arrivals_s["f1"]
    assert f1.size == 6
    assert ((f1[:3] >= 0) & (f1[:3] < 60)).all() and (60 <= f1[3] < 120)
    assert (f1[4:] >= 2879 * 60).all()
    # timers are spread evenly: strictly periodic every 10 minutes
    assert np.allclose(np.diff(tr.arrivals_s["f2"]), 600.0)
    even = read_azure2019(two_days, spread="even").arrivals_s["f1"]
    assert np.allclose(even[:3], [10.0, 30.0, 50.0])
    assert np.array_equal(read_azure2019(two_days, seed=1).arrivals_s["f1"], f1)


def test_selection_before_expansion(two_days: list[Path]) -> None:
    assert read_azure2019(two_days, top=1).functions == ("f2",)  # 144 timer calls
    assert read_azure2019(two_days, triggers=["queue"]).functions == ("f3",)
    with pytest.raises(ConfigError, match="max_arrivals"):
        read_azure2019(two_days, max_arrivals=5)


def test_writer_round_trips(tmp_path: Path, two_days: list[Path]) -> None:
    counts = read_azure2019_counts(two_days[1])
    out = tmp_path / "copy.csv"
    write_azure2019(counts, out)
    again = read_azure2019_counts(out)
    assert again.names == counts.names and np.array_equal(again.counts, counts.counts)
    assert detect_format(out) == "azure2019"


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda rows: rows[1].replace(",3,1,", ",3,x,", 1), "line 2, column 6 (minute 2)"),
        (lambda rows: rows[1].replace(",3,1,", ",3,-2,", 1), "line 2, column 6 (minute 2)"),
        (lambda rows: rows[1].replace(",http,", ",carrier-pigeon,", 1), "line 2, column 4"),
        (lambda rows: rows[1].rsplit(",", 1)[0], "line 2, column 1444"),
        (lambda rows: rows[1].replace("o1,", ",", 1), "line 2, column 1"),
    ],
)
def test_broken_2019_files_name_line_and_column(tmp_path: Path, mutate, where: str) -> None:
    good = _day(tmp_path / "x.csv", [("o1", "a1", "f1", "http", {1: 3, 2: 1})])
    rows = good.read_text().splitlines()
    rows[1] = mutate(rows)
    bad = tmp_path / "broken.csv"
    bad.write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigError) as err:
        read_azure2019(bad)
    assert str(bad) in str(err.value) and where in str(err.value)


def test_broken_2019_header_and_duplicates(tmp_path: Path) -> None:
    bad = tmp_path / "h.csv"
    bad.write_text(HEADER.replace("Trigger", "Trig") + "\n")
    with pytest.raises(ConfigError, match=r"line 1, column 4"):
        read_azure2019(bad)
    dup = _day(tmp_path / "d.csv", [("o", "a", "f", "http", {}), ("o", "a", "f", "http", {})])
    with pytest.raises(ConfigError, match=r"line 3, column 3: .*repeats line 2"):
        read_azure2019(dup)


def test_2021_reader(tmp_path: Path) -> None:
    path = tmp_path / "inv2021.txt"
    path.write_text(
        "app,func,end_timestamp,duration\na1,f1,10.5,0.5\na1,f1,70.0,1.0\na2,f2,30.25,0.25\n"
    )
    tr = read_trace(path)
    assert tr.duration_s == 120.0
    assert tr.arrivals_s["f1"].tolist() == [10.0, 69.0]
    assert tr.arrivals_s["f2"].tolist() == [30.0]
    assert tr.info["f1"].avg_duration_s == pytest.approx(0.75)
    assert read_azure2021(path, top=1).functions == ("f1",)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("app,func,end_timestamp,duration\na1,f1,ten,0.5\n", "line 2, column 3"),
        ("app,func,end_timestamp,duration\na1,f1,10,0.5\na1,f1,10,-1\n", "line 3, column 4"),
        ("app,func,end_timestamp,duration\na1,,10,0.5\n", "line 2, column 2"),
        ("app,func,end_timestamp,duration\na1,f1,10\n", "line 2, column 4"),
        ("app,function,end_timestamp,duration\n", "line 1, column 2"),
    ],
)
def test_broken_2021_files(tmp_path: Path, body: str, where: str) -> None:
    path = tmp_path / "bad2021.txt"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        read_azure2021(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "what.csv"
    path.write_text("a,b,c\n")
    with pytest.raises(ConfigError, match="unknown trace format"):
        read_trace(path)


def test_a_gap_between_day_files_becomes_zeros(tmp_path: Path) -> None:
    d1 = _day(
        tmp_path / "invocations_per_function_md.anon.d01.csv", [("o", "a", "f", "http", {2: 4})]
    )
    d3 = _day(
        tmp_path / "invocations_per_function_md.anon.d03.csv", [("o", "a", "f", "http", {1: 5})]
    )
    counts = read_azure2019_counts([d3, d1])
    assert counts.minutes == 3 * 1440  # day 2 is missing, not skipped
    (row,) = counts.counts
    assert row[1] == 4 and row[2 * 1440] == 5 and row.sum() == 9
    assert row[1440 : 2 * 1440].sum() == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("o1,a1,f1,-250,4,1,900", "line 2, column 4: .*must be >= 0"),
        ("o1,a1,f1,slow,4,1,900", "line 2, column 4: .*must be a number, got 'slow'"),
        ("o1,a1,f1", "line 2, column 4: missing fields"),
    ],
)
def test_broken_durations_file_names_line_and_column(
    two_days: list[Path], line: str, message: str
) -> None:
    durations = two_days[1].with_name("function_durations_percentiles.anon.d01.csv")
    durations.write_text(f"HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum\n{line}\n")
    with pytest.raises(ConfigError, match=message) as err:
        read_azure2019_counts(two_days)
    assert str(durations) in str(err.value)


def test_durations_and_memory_given_explicitly_win(tmp_path: Path, two_days: list[Path]) -> None:
    durations = tmp_path / "elsewhere-durations.csv"
    durations.write_text("HashOwner,HashApp,HashFunction,Average\no1,a1,f1,1500\no2,a2,f3,0\n")
    memory = tmp_path / "elsewhere-memory.csv"
    memory.write_text("HashOwner,HashApp,SampleCount,AverageAllocatedMb\no2,a2,3,64\n")
    info = read_azure2019_counts(two_days, durations=durations, memory=memory).info
    assert info["f1"].avg_duration_s == pytest.approx(1.5)
    assert info["f3"].avg_duration_s == 0.0  # zero is a valid average, not "missing"
    assert info["f3"].memory_mb == pytest.approx(64.0)
    assert info["f1"].memory_mb is None  # the file beside was not read


def _invocations(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"line 1, column 1: empty file, expected a header"),
        ("HashOwner,HashApp,HashFunction,Trigger\n", r"line 1, column 5: no minute columns"),
        ("HashOwner,HashApp,HashFunction,Trigger,1,3\n", r"line 1, column 6: .*minute header '2'"),
        ("HashOwner,HashApp,HashFunction\n", r"line 1, column 4: .*'Trigger', got '<missing>'"),
        (  # a field beyond the csv module's size limit
            "HashOwner,HashApp,HashFunction,Trigger,1\n" + "x" * 200_000 + ",a,f,http,1\n",
            r"line 2: field larger than field limit",
        ),
        ("HashOwner,HashApp,HashFunction,Trigger,1\no,,f,http,1\n", r"line 2, column 2: empty"),
    ],
)
def test_broken_2019_headers_and_records(tmp_path: Path, text: str, message: str) -> None:
    path = _invocations(tmp_path, "bad.csv", text)
    with pytest.raises(ConfigError, match=message) as err:
        read_azure2019_counts(path)
    assert str(path) in str(err.value)


def test_unreadable_missing_and_unjoinable_day_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Azure 2019 invocation files given"):
        read_azure2019_counts([])
    with pytest.raises(ConfigError, match=r"nope\.csv: cannot read"):
        read_azure2019_counts(tmp_path / "nope.csv")
    short = "HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,http,1,2\n"
    d1 = _day(tmp_path / "invocations_per_function_md.anon.d01.csv", [("o", "a", "f", "http", {})])
    d2 = _invocations(tmp_path, "invocations_per_function_md.anon.d02.csv", short)
    with pytest.raises(ConfigError, match=r"d02\.csv: line 1: has 2 minute columns, .*d01\.csv"):
        read_azure2019_counts([d1, d2])
    with pytest.raises(ConfigError, match="the same day is given twice"):
        read_azure2019_counts([d1, d1])


def test_files_without_day_numbers_join_in_the_order_given(tmp_path: Path) -> None:
    text = "HashOwner,HashApp,HashFunction,Trigger,1,2\n"
    first = _invocations(tmp_path, "b.csv", text + "o,a1,f,HTTP,1,2\n\no,a2,f,timer,0,0\n")
    second = _invocations(tmp_path, "a.csv", text + "o,a1,f,http,3,4\n")
    counts = read_azure2019_counts([first, second])
    assert counts.minutes == 4
    assert counts.names == ("a1/f", "a2/f")  # one name in two apps: qualified by the app
    assert counts.counts.tolist() == [[1, 2, 3, 4], [0, 0, 0, 0]]
    assert counts.info["a1/f"].trigger == "http"  # triggers are case-insensitive
    assert counts.source == "b.csv (+1 days)"
    assert read_azure2019_counts(second).source == "a.csv"


def test_durations_writer_round_trips(tmp_path: Path, two_days: list[Path]) -> None:
    counts = read_azure2019_counts(two_days)  # only f1 has a duration (250 ms)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    write_azure2019(counts, out_dir / "invocations_per_function_md.anon.d01.csv")
    write_azure2019_durations(counts, out_dir / "function_durations_percentiles.anon.d01.csv")
    lines = (out_dir / "function_durations_percentiles.anon.d01.csv").read_text().splitlines()
    assert lines == [
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum",
        "o1,a1,f1,250.0,6,250.0,250.0",  # count: f1's total invocations
    ]
    again = read_azure2019_counts(out_dir / "invocations_per_function_md.anon.d01.csv")
    assert again.info["f1"].avg_duration_s == pytest.approx(0.25)
    assert again.info["f3"].avg_duration_s is None
    assert (again.info["f3"].owner, again.info["f3"].app) == ("o2", "a2")


def test_reader_defaults_and_writer_without_info(tmp_path: Path, two_days: list[Path]) -> None:
    # the default seed is 0, and explicit percentile files reach the trace's info
    assert read_azure2019(two_days).arrivals_s["f1"].tolist() == (
        read_azure2019(two_days, seed=0).arrivals_s["f1"].tolist()
    )
    durations = tmp_path / "given.csv"
    durations.write_text("HashOwner,HashApp,HashFunction,Average\no2,a2,f3,40\n")
    assert read_azure2019(two_days, durations=durations).info["f3"].avg_duration_s == 0.04
    bare = MinuteCounts(("solo",), np.array([[1, 0, 2]]), {}, "made here")
    out = tmp_path / "bare.csv"
    write_azure2019(bare, out)
    assert out.read_text().splitlines()[1] == "solo,solo,solo,http,1,0,2"


def test_blank_lines_header_only_days_and_seeds(tmp_path: Path, two_days: list[Path]) -> None:
    text = "HashOwner,HashApp,HashFunction,Trigger,1,2\n"
    spaced = _invocations(tmp_path, "spaced.csv", text + "o,a,f,http,1,2\n   \n\n")
    assert read_azure2019_counts(spaced).counts.tolist() == [[1, 2]]  # blank lines skipped
    junk = _invocations(tmp_path, "junk.csv", text + "o,a,f,http,1,2\njunk\n")
    with pytest.raises(ConfigError, match=r"junk\.csv: line 3, column 2: expected 6 fields"):
        read_azure2019_counts(junk)
    empty = _invocations(tmp_path, "empty.csv", text)
    counts = read_azure2019_counts(empty)
    assert counts.names == () and counts.counts.shape == (0, 2)
    one = read_azure2019(two_days, seed=1).arrivals_s["f1"]
    two = read_azure2019(two_days, seed=2).arrivals_s["f1"]
    assert one.size == two.size == 6 and not np.array_equal(one, two)  # the seed places them
