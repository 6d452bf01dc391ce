"""`shifu report summary` over the sample KB plus a generated year, checked in a real headless Chromium.

The report is written and opened inside a network namespace with no network (`unshare -n`):
the page must load, every chart must decode, and a screenshot's chart areas must not be blank.
The CSV numbers are checked against counts taken straight from the operational database.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
import warnings
from html import unescape
from pathlib import Path

import pytest

from tests.conftest import require_tool

SHIFU = Path(sys.executable).parent / "shifu"
CHARTS = ("pareto", "repeats", "repair_time", "first_time_fix", "gaps", "model_use")
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => {
    const b = i.getBoundingClientRect();
    return {id: i.id, complete: i.complete, width: i.naturalWidth, left: b.left, top: b.top + scrollY,
            w: b.width, h: b.height};
  });
  document.body.setAttribute("data-probe", JSON.stringify({images, height: document.documentElement.scrollHeight}));
});
</script></body>"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFU_")}
    env.update({"SHIFU_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    return env


def _offline() -> list[str]:
    require_tool("unshare")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
            pytest.fail("CI=true: `unshare -n` does not work here", pytrace=False)
        pytest.skip("`unshare -n` needs root here")
    return ["unshare", "-n"]


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = require_tool("chromium")
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*_offline(), browser, "--headless", *sandbox, "--disable-gpu", "--force-device-scale-factor=1",
         "--hide-scrollbars", "--no-first-run", "--user-data-dir=" + args[0], *args[1:]],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def year_home(tmp_path_factory: pytest.TempPathFactory, built_home: Path) -> Path:
    """The built sample KB and a generated year (2025) of answers, alarms and feedback."""
    import shutil

    from bench.report_data import generate

    home = tmp_path_factory.mktemp("report_home")
    shutil.copytree(built_home, home, dirs_exist_ok=True, symlinks=True)
    generate(home / "ops.sqlite", audit_rows=4000, alarms=1000, year=2025)
    return home


def _summary(home: Path, out: Path, lang: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_offline(), str(SHIFU), "report", "summary", "--from", "2025-01-01", "--to", "2025-12-31", "--out", str(out),
         "--lang", lang],
        capture_output=True, text=True, env=_env(home), timeout=300,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_summary_files_and_numbers(year_home: Path, tmp_path: Path) -> None:
    result = _summary(year_home, tmp_path / "out", "en")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert "chart 6/6" in result.stderr  # progress is shown
    for name in ("report.html", *(f"{c}.png" for c in CHARTS),
                 *(f"{t}.csv" for t in ("pareto", "repeats", "repair_time", "first_time_fix", "gaps", "model_use"))):
        assert (out / name).stat().st_size > 0, name
    pareto = _rows(out / "pareto.csv")
    assert list(pareto[0]) == ["code", "machine_model", "source", "count", "share", "cumulative_share"]
    assert {r["source"] for r in pareto} == {"question", "alarm"}
    assert float(pareto[-1]["cumulative_share"]) == pytest.approx(1.0)
    assert sum(float(r["share"]) for r in pareto) == pytest.approx(1.0, abs=1e-4)  # rounded to 6 places
    # the totals, counted straight from the database: people's questions with a code, alarms with repeats
    conn = sqlite3.connect(year_home / "ops.sqlite")
    questions = conn.execute("SELECT count(*) FROM audit WHERE normalized IS NOT NULL AND source IN"
                             " ('keyboard', 'scanner', 'cli', 'http')").fetchone()[0]
    alarms = conn.execute("SELECT sum(1 + repeats) FROM alarms").fetchone()[0]
    refused = conn.execute("SELECT count(*) FROM audit WHERE refused = 1 AND likely_codes = '[]'"
                           " AND source IN ('keyboard', 'scanner', 'cli', 'http')").fetchone()[0]
    conn.close()
    assert sum(int(r["count"]) for r in pareto if r["source"] == "question") == questions
    assert sum(int(r["count"]) for r in pareto if r["source"] == "alarm") == alarms
    # a code's spellings are one row: no code appears twice for one model and source
    assert len({(r["code"], r["machine_model"], r["source"]) for r in pareto}) == len(pareto)
    gaps = _rows(out / "gaps.csv")
    assert list(gaps[0])[:3] == ["group", "count", "example_query"]
    assert sum(int(r["count"]) for r in gaps) == refused
    assert len(gaps) <= 10  # the generated year words 6 unanswerable questions a few ways each
    repair = _rows(out / "repair_time.csv")
    assert {r["source"] for r in repair} == {"record", "operator"}  # the sample KB's 2025 records are read
    assert all(float(r["p90_min"]) >= float(r["median_min"]) for r in repair)
    assert _rows(out / "repeats.csv") and _rows(out / "first_time_fix.csv")


def test_report_renders_offline_in_chromium(year_home: Path, tmp_path: Path) -> None:
    for lang, heading in (("zh-TW", "柏拉圖"), ("en", "Pareto of alarms")):
        out = tmp_path / lang
        result = _summary(year_home, out, lang)
        assert result.returncode == 0, result.stderr
        page = (out / "report.html").read_text(encoding="utf-8")
        assert heading in page
        # self-contained: nothing fetched from anywhere
        links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, re.I)
        assert len(links) == len(CHARTS) and all(link.startswith("data:image/png;base64,") for link in links)
        assert not re.search(r"url\(|@import|https?://", page, re.I)
        probe_page = out / "probe.html"
        probe_page.write_text(page.replace("</body>", PROBE), encoding="utf-8")
        dom = _chromium(str(tmp_path / f"profile-{lang}"), "--window-size=1280,1000", "--dump-dom",
                        probe_page.as_uri())
        assert dom.returncode == 0, dom.stderr[-2000:]
        found = re.search(r'data-probe="([^"]*)"', dom.stdout)
        assert found, "the page did not finish loading"
        probe = json.loads(unescape(found.group(1)))
        images = {i["id"]: i for i in probe["images"]}
        assert set(images) == {f"chart-{c}" for c in CHARTS}
        for name, image in images.items():
            assert image["complete"] and image["width"] > 0, f"{name} did not decode"
        shot = tmp_path / f"{lang}.png"
        taken = _chromium(str(tmp_path / f"profile-{lang}"), f"--window-size=1280,{int(probe['height']) + 20}",
                          f"--screenshot={shot}", (out / "report.html").as_uri())
        assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
        _assert_charts_drawn(shot, images)


def _assert_charts_drawn(shot: Path, images: dict[str, dict[str, float]]) -> None:
    import numpy as np
    from PIL import Image

    with Image.open(shot) as full:
        screen = np.asarray(full.convert("RGB"), dtype=np.int32)
    for name, box in images.items():
        area = screen[int(box["top"]) + 2:int(box["top"] + box["h"]) - 2,
                      int(box["left"]) + 2:int(box["left"] + box["w"]) - 2]
        assert area.shape[1] > 300 and area.shape[0] > 150, f"{name}: chart area is {area.shape}"
        inked = float((area.sum(axis=2) < 600).mean())
        assert inked > 0.02, f"{name}: chart area is blank in the screenshot ({inked:.1%} inked)"
        colours = len(np.unique(area.reshape(-1, 3), axis=0))
        assert colours > 20, f"{name}: chart area is a flat fill ({colours} colours)"


def test_chinese_chart_labels_have_glyphs() -> None:
    """matplotlib draws the zh-TW labels with a CJK font (no missing-glyph boxes); Chromium has one too."""
    fc_match = require_tool("fc-match")
    family = subprocess.run([fc_match, "-f", "%{family}", ":lang=zh-tw"], capture_output=True, text=True).stdout
    assert "CJK" in family or "Hei" in family or "Ming" in family, f"no Chinese font for the browser: {family}"
    from appliance.report import charts
    from appliance.report.figures import GapRow, ParetoRow

    assert charts.cjk_font() is not None
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Gg]lyph.*missing")
        charts.pareto_chart([ParetoRow("A01", "CV-200", "alarm", 3, 0.75, 0.75),
                             ParetoRow("E-203", "IM-850", "question", 1, 0.25, 1.0)], "zh-TW")
        charts.gaps_chart([GapRow("冷卻水塔風扇異音", 4, "冷卻水塔 風扇 異音", 2)], "zh-TW")
