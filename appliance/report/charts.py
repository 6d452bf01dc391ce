"""The report's charts as PNG bytes (matplotlib, Agg), labelled in the report's language.

Chinese labels need a CJK font: Noto Sans CJK (Debian `fonts-noto-cjk`, installed by
`make tools`) is put first in matplotlib's font list, with DejaVu Sans behind it for the
glyphs it lacks. Without it the Chinese labels would print as empty boxes, so
`cjk_font()` says whether one was found and the report warns when it was not.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from appliance.report import figures as fig
from appliance.report.labels import label

CJK_FAMILIES = ("Noto Sans CJK TC", "Noto Sans CJK JP", "Noto Sans CJK SC", "WenQuanYi Zen Hei", "AR PL UMing TW")
BAR = "#2f6690"
LINE = "#d1495b"
OTHER = ("#2f6690", "#3a7ca5", "#81c3d7", "#d9dcd6", "#d1495b")
TOP = 15


@cache
def cjk_font() -> str | None:
    """The first installed CJK font family matplotlib can use, or None."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    if not installed.intersection(CJK_FAMILIES):
        # matplotlib's font list is cached from its first run: a font installed since is not in it.
        for path in font_manager.findSystemFonts():
            if "CJK" in Path(path).name or "wqy" in Path(path).name.lower():
                font_manager.fontManager.addfont(path)
        installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((family for family in CJK_FAMILIES if family in installed), None)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = cjk_font()
    plt.rcParams["font.family"] = [family, "DejaVu Sans"] if family else ["DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    return plt


def _height(bars: int) -> float:
    """Inches for a horizontal bar chart: room for the title and legend even with one bar."""
    return max(3.0, 1.4 + 0.32 * bars)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def _empty(plt: Any, lang: str, title: str) -> bytes:
    figure, axes = plt.subplots(figsize=(8, 3))
    axes.set_title(title)
    axes.text(0.5, 0.5, label(lang, "no_data"), ha="center", va="center", fontsize=14, color="#555555")
    axes.set_xticks([])
    axes.set_yticks([])
    return _png(figure)


def pareto_chart(rows: Sequence[fig.ParetoRow], lang: str) -> bytes:
    plt = _pyplot()
    bars = fig.pareto_by_code(rows)[:TOP]
    title = label(lang, "pareto")
    if not bars:
        return _empty(plt, lang, title)
    figure, axes = plt.subplots(figsize=(9, 4.2))
    codes = [b[0] for b in bars]
    axes.bar(codes, [b[1] for b in bars], color=BAR)
    axes.set_ylabel(label(lang, "count"))
    axes.set_title(title)
    axes.tick_params(axis="x", rotation=45)
    twin = axes.twinx()
    twin.plot(codes, [b[2] * 100 for b in bars], color=LINE, marker="o")
    twin.set_ylim(0, 105)
    twin.set_ylabel(label(lang, "cumulative") + " (%)")
    return _png(figure)


def repeats_chart(rows: Sequence[fig.RepeatRow], lang: str, window_days: float) -> bytes:
    plt = _pyplot()
    title = label(lang, "repeats", n=f"{window_days:g}")
    shown = list(rows)[:TOP]
    if not shown:
        return _empty(plt, lang, title)
    figure, axes = plt.subplots(figsize=(9, _height(len(shown))))
    names = [f"{r.machine_id} {r.code} ({label(lang, r.source)})" for r in shown][::-1]
    axes.barh(names, [r.repeats for r in shown][::-1], color=BAR, label=label(lang, "repeat_count"))
    axes.barh(names, [r.fixes_not_held for r in shown][::-1], color=LINE, height=0.4,
              label=label(lang, "fixes_not_held"))
    axes.set_xlabel(label(lang, "repeat_count"))
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8)
    return _png(figure)


def repair_time_chart(rows: Sequence[fig.RepairTimeRow], lang: str) -> bytes:
    plt = _pyplot()
    title = label(lang, "repair_time")
    shown = list(rows)[:TOP]
    if not shown:
        return _empty(plt, lang, title)
    figure, axes = plt.subplots(figsize=(9, _height(len(shown))))
    names = [f"{r.code} ({label(lang, r.source)}, n={r.n})" for r in shown][::-1]
    axes.barh(names, [r.p90_min for r in shown][::-1], color="#81c3d7", label=label(lang, "p90"))
    axes.barh(names, [r.median_min for r in shown][::-1], color=BAR, height=0.45, label=label(lang, "median"))
    axes.set_xlabel(label(lang, "minutes"))
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8)
    return _png(figure)


def first_time_fix_chart(rows: Sequence[fig.FirstFixRow], lang: str) -> bytes:
    plt = _pyplot()
    title = label(lang, "first_time_fix")
    shown = sorted(rows, key=lambda r: (-r.incidents, r.code, r.machine_model))[:TOP]
    if not shown:
        return _empty(plt, lang, title)
    figure, axes = plt.subplots(figsize=(9, _height(len(shown))))
    names = [f"{r.code} {r.machine_model}".strip() + f" (n={r.incidents})" for r in shown][::-1]
    left = [0.0] * len(shown)
    for verdict, color in (("fixed", "#3a7ca5"), ("not_fixed", "#f2a541"), ("call_technician", LINE)):
        values = [getattr(r, f"{verdict}_first") / r.incidents * 100 for r in shown][::-1]
        axes.barh(names, values, left=left, color=color, label=label(lang, verdict))
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.set_xlim(0, 100)
    axes.set_xlabel("%")
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8)
    return _png(figure)


def gaps_chart(rows: Sequence[fig.GapRow], lang: str) -> bytes:
    plt = _pyplot()
    title = label(lang, "gaps")
    shown = list(rows)[:TOP]
    if not shown:
        return _empty(plt, lang, title)
    figure, axes = plt.subplots(figsize=(9, _height(len(shown))))
    names = [(r.group if len(r.group) <= 40 else r.group[:39] + "…") for r in shown][::-1]
    axes.barh(names, [r.count for r in shown][::-1], color=LINE)
    axes.set_xlabel(label(lang, "count"))
    axes.set_title(title)
    return _png(figure)


def model_use_chart(use: fig.ModelUse, lang: str) -> bytes:
    plt = _pyplot()
    title = label(lang, "model_use")
    if not use.answers:
        return _empty(plt, lang, title)
    parts = [
        (label(lang, "fresh"), use.generated - use.cached),
        (label(lang, "cached"), use.cached),
        (label(lang, "gate_withheld"), use.gate_withheld),
        (label(lang, "no_generation"), use.answers - use.generated - use.gate_withheld),
    ]
    figure, axes = plt.subplots(figsize=(9, 3))
    names = [p[0] for p in parts][::-1]
    axes.barh(names, [p[1] for p in parts][::-1], color=OTHER[: len(parts)][::-1])
    axes.set_xlabel(label(lang, "answers"))
    axes.set_title(title)
    return _png(figure)
