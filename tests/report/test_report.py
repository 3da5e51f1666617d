"""The HTML report: self-contained, every figure present, renders in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from testbed.cli import cli
from testbed.report.html import FIGURES, write_report
from tests.helpers import needs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def experiment(tmp_path: Path, make_run: Any) -> Path:
    """Two policies x two seeds, two workflows, a minute of requests and timeline."""
    root = tmp_path / "exp"
    rng = np.random.default_rng(7)
    for index, label in enumerate(("always-on", "scale-to-zero")):
        for seed in (1, 2):
            requests, stages, timeline = [], [], []
            for i in range(120):
                t = i * 0.5
                wf = "ml" if i % 2 else "social"
                cold = label == "scale-to-zero" and i % 10 == 0
                lat = float(rng.gamma(2.0, 0.05)) + (1.5 if cold else 0.0)
                ok = int(i % 37 != 0)
                requests.append(
                    f"{i},{wf},workflow,{t},{t},{t + lat},{lat},{200 if ok else 502},{ok},"
                    f"{int(cold)},{int(cold)},1.0,"
                )
                stages.append(f"{i},s1,{wf}-f,{t},{t + lat},{lat},{int(cold)},200")
            for s in range(61):
                for fn in ("ml-f", "social-f"):
                    ready = 1 if label == "always-on" else (s // 10) % 2
                    timeline.append(f"{s},{fn},{ready},0,{s % 2},0,0.5,256")
            make_run(
                root / label / f"seed-{seed}",
                meta={
                    "label": label,
                    "seed": seed,
                    "policy_index": index,
                    "warmup_s": 5,
                    "duration_s": 60,
                },
                requests=requests,
                stages=stages,
                timeline=timeline,
                decisions=[{"t_s": 1, "decide_s": 0.0005, "valid": True, "functions": {}}],
            )
    return root


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', page)


def test_report_is_self_contained_with_every_figure(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    result = write_report([experiment], out)
    page = out.read_text()
    assert 'src="http' not in page and 'href="http' not in page  # nothing fetched from elsewhere
    sources = _img_sources(page)
    assert len(sources) == len(FIGURES) == len(result.png_paths)
    for (slug, _caption), encoded, png in zip(FIGURES, sources, result.png_paths, strict=True):
        assert f'id="{slug}"' in page
        data = base64.b64decode(encoded)
        assert png.read_bytes() == data  # the PNG beside the page is the embedded one
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.width > 300 and image.height > 200
        assert np.asarray(image.convert("L")).std() > 5  # not a blank canvas
    assert "always-on <em>(baseline)</em>" in page
    assert "<th>social/s1</th>" in page and "<th>ml/s1</th>" in page  # per-stage table
    assert "Per workflow" in page and "Cold-start rate per function" in page
    assert result.comparison.get("scale-to-zero").metrics["cold_start_pct"].mean > 0


def test_report_command(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = CliRunner().invoke(
        cli, ["report", str(experiment), "-o", str(out), "--baseline", "scale-to-zero"]
    )
    assert res.exit_code == 0, res.output
    assert f"report: {out.resolve()}" in res.output
    assert (tmp_path / "r-latency-cdf.png").is_file()
    assert "scale-to-zero <em>(baseline)</em>" in out.read_text()


@needs(CHROMIUM is not None, "needs Chromium (Debian package: chromium)")
def test_report_renders_in_headless_chromium(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report([experiment], out)
    shot = tmp_path / "shot.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ]
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                CHROMIUM,
                *flags,
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1200,3000",
                out.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM, *flags, f"--user-data-dir={profile}", "--dump-dom", out.as_uri()],
            check=True,
            capture_output=True,
            timeout=90,
            text=True,
        ).stdout
    # the page's load handler counts images the browser actually decoded
    assert f'data-images-decoded="{len(FIGURES)}/{len(FIGURES)}"' in dom
    pixels = np.asarray(Image.open(shot).convert("L"), dtype="float64")
    assert pixels.shape[0] >= 2000
    assert pixels.var() > 100  # non-blank: text, tables and plots drawn
    lower = pixels[pixels.shape[0] // 2 :]
    assert lower.var() > 50  # figures reach down the page
