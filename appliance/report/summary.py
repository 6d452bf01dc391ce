"""`shifu report summary`: the figures of a period as report.html, one PNG per chart and CSV tables.

Files written into the output folder (CSV: UTF-8 with header; headers in English, labels
such as `label` in the report's language; shares are fractions 0-1):
- `pareto.csv`: code, machine_model, source (question|alarm), count, share, cumulative_share
- `repeats.csv`: source (alarm|record), machine_id, machine_model, line, code, occurrences,
  repeats, fixes_not_held, failed_fixes, last_seen
- `repair_time.csv`: code, source (record|operator), n, median_min, p90_min
- `first_time_fix.csv`: code, machine_model, incidents, fixed_first, not_fixed_first,
  call_technician_first, first_time_fix_rate, review (true|false)
- `gaps.csv`: group (the representative question), count, example_query, variants
- `model_use.csv`: metric, value, label
- `pareto.png`, `repeats.png`, `repair_time.png`, `first_time_fix.png`, `gaps.png`,
  `model_use.png`, and `report.html` holding all of it with no external resource.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.report import charts, html
from appliance.report import figures as fig
from appliance.report.data import Dataset, Period, Scope
from appliance.report.labels import label

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    window_days: float = 30
    """Repeat offenders: the same code on the same machine again within this many days."""
    min_feedback: int = 3
    """A procedure is a review candidate only with at least this many incidents with feedback."""
    review_share: float = 0.5
    """... of which at least this share ended first in "not fixed" or "call technician"."""
    gap_similarity: float = 0.5
    """Two refused questions are one gap when their terms overlap this much (Jaccard)."""


@dataclass(frozen=True)
class Figures:
    pareto: list[fig.ParetoRow]
    repeats: list[fig.RepeatRow]
    repair_time: list[fig.RepairTimeRow]
    first_time_fix: list[fig.FirstFixRow]
    gaps: list[fig.GapRow]
    model_use: fig.ModelUse


def compute(data: Dataset, options: Options, progress: Progress | None = None) -> Figures:
    say = progress or (lambda _m: None)
    say("pareto")
    pareto = fig.pareto(data)
    say("repeat offenders")
    repeats = fig.repeats(data, options.window_days)
    say("time to repair")
    repair_time = fig.repair_time(data)
    say("first-time fix")
    first = fig.first_time_fix(data, options.min_feedback, options.review_share)
    say("knowledge-base gaps")
    gaps = fig.gaps(data, options.gap_similarity)
    say("model use")
    return Figures(pareto, repeats, repair_time, first, gaps, fig.model_use(data))


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return round(value, 6)
    return "" if value is None else value


def write_csv(path: Path, rows: Sequence[Any], columns: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            values = dataclasses.asdict(row) if dataclasses.is_dataclass(row) and not isinstance(row, type) else dict(zip(columns, row, strict=True))
            writer.writerow([_csv_value(values[c]) for c in columns])


def _columns(kind: type) -> list[str]:
    return [f.name for f in dataclasses.fields(kind)]


def model_use_rows(use: fig.ModelUse, lang: str) -> list[tuple[str, Any, str]]:
    metrics: list[tuple[str, Any]] = [
        ("answers", use.answers), ("generated_share", use.generated_share), ("gate_withheld", use.gate_withheld),
        ("gate_dropped", use.gate_dropped), ("cache_hit_share", use.cache_hit_share), ("refused", use.refused),
        ("latency_p50_ms", use.latency_p50_ms), ("latency_p95_ms", use.latency_p95_ms),
    ]
    return [(name, value, label(lang, name)) for name, value in metrics]


def write_summary(data: Dataset, out: Path, *, period: Period, scope: Scope | None = None, lang: str = "zh-TW",
                  options: Options | None = None, progress: Progress | None = None) -> dict[str, Path]:
    """Write every file of the report into `out`; returns them by name."""
    options = options or Options()
    say = progress or (lambda _m: None)
    out.mkdir(parents=True, exist_ok=True)
    figures = compute(data, options, say)
    files: dict[str, Path] = {}

    def put_csv(name: str, rows: Sequence[Any], columns: Sequence[str]) -> None:
        files[name] = out / name
        write_csv(files[name], rows, columns)

    say("tables")
    put_csv("pareto.csv", figures.pareto, _columns(fig.ParetoRow))
    put_csv("repeats.csv", figures.repeats, _columns(fig.RepeatRow))
    put_csv("repair_time.csv", figures.repair_time, _columns(fig.RepairTimeRow))
    put_csv("first_time_fix.csv", figures.first_time_fix, _columns(fig.FirstFixRow))
    put_csv("gaps.csv", figures.gaps, _columns(fig.GapRow))
    use_rows = model_use_rows(figures.model_use, lang)
    put_csv("model_use.csv", use_rows, ["metric", "value", "label"])

    pngs: dict[str, bytes] = {}
    makers: list[tuple[str, Callable[[], bytes]]] = [
        ("pareto", lambda: charts.pareto_chart(figures.pareto, lang)),
        ("repeats", lambda: charts.repeats_chart(figures.repeats, lang, options.window_days)),
        ("repair_time", lambda: charts.repair_time_chart(figures.repair_time, lang)),
        ("first_time_fix", lambda: charts.first_time_fix_chart(figures.first_time_fix, lang)),
        ("gaps", lambda: charts.gaps_chart(figures.gaps, lang)),
        ("model_use", lambda: charts.model_use_chart(figures.model_use, lang)),
    ]
    for number, (name, make) in enumerate(makers, start=1):
        say(f"chart {number}/{len(makers)}: {name}")
        pngs[name] = make()
        files[f"{name}.png"] = out / f"{name}.png"
        files[f"{name}.png"].write_bytes(pngs[name])

    say("report.html")
    files["report.html"] = out / "report.html"
    document = _document(figures, pngs, data, period, scope or Scope(), lang, options, use_rows)
    temporary = out / ".report.html.tmp"
    temporary.write_text(document, encoding="utf-8")
    os.replace(temporary, files["report.html"])
    return files


def _document(figures: Figures, pngs: dict[str, bytes], data: Dataset, period: Period, scope: Scope, lang: str,
              options: Options, use_rows: list[tuple[str, Any, str]]) -> str:
    def L(key: str, **values: object) -> str:
        return label(lang, key, **values)

    meta = [
        f"{L('period')}: {period.first.isoformat()} – {period.last.isoformat()}",
        f"{L('scope')}: {scope.describe() or L('all_machines')}",
        f"{L('generated_at')}: {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M')}",
    ]
    sections: list[tuple[str, str]] = []
    sections.append((L("pareto"), html.chart("pareto", pngs["pareto"], L("pareto"))
                     + f'<p class="note">{L("pareto_note")}</p>'
                     + html.table([L("code"), L("machine_model"), L("source"), L("count"), L("share"),
                                   L("cumulative")],
                                  [(r.code, r.machine_model, L(r.source), r.count, _pct(r.share),
                                    _pct(r.cumulative_share))
                                   for r in figures.pareto], lang)))
    repeats_title = L("repeats", n=f"{options.window_days:g}")
    sections.append((repeats_title, html.chart("repeats", pngs["repeats"], repeats_title)
                     + html.table([L("source"), L("machine"), L("machine_model"), L("line"), L("code"),
                                   L("occurrences"), L("repeat_count"), L("fixes_not_held"), L("failed_fixes"),
                                   L("last_seen")],
                                  [(L(r.source), r.machine_id, r.machine_model, r.line, r.code, r.occurrences,
                                    r.repeats, r.fixes_not_held, r.failed_fixes, r.last_seen)
                                   for r in figures.repeats], lang)))
    sections.append((L("repair_time"), html.chart("repair_time", pngs["repair_time"], L("repair_time"))
                     + html.table([L("code"), L("source"), L("n"), L("median"), L("p90")],
                                  [(r.code, L(r.source), r.n, r.median_min, r.p90_min)
                                   for r in figures.repair_time], lang)))
    review = [r for r in figures.first_time_fix if r.review]
    review_html = (html.table([L("code"), L("machine_model"), L("incidents"), L("ftf_rate"), L("not_fixed"),
                               L("call_technician")],
                              [(r.code, r.machine_model, r.incidents, _pct(r.first_time_fix_rate), r.not_fixed_first,
                                r.call_technician_first) for r in review], lang)
                   if review else f"<p>{L('review_none')}</p>")
    sections.append((L("first_time_fix"), html.chart("first_time_fix", pngs["first_time_fix"], L("first_time_fix"))
                     + f"<h3>{L('review')}</h3>" + review_html
                     + html.table([L("code"), L("machine_model"), L("incidents"), L("fixed"), L("not_fixed"),
                                   L("call_technician"), L("ftf_rate")],
                                  [(r.code, r.machine_model, r.incidents, r.fixed_first, r.not_fixed_first,
                                    r.call_technician_first, _pct(r.first_time_fix_rate))
                                   for r in figures.first_time_fix], lang)))
    sections.append((L("gaps"), html.chart("gaps", pngs["gaps"], L("gaps"))
                     + html.table([L("group"), L("count"), L("variants"), L("example")],
                                  [(r.group, r.count, r.variants, r.example_query) for r in figures.gaps], lang,
                                  limit=50)))
    sections.append((L("model_use"), html.chart("model_use", pngs["model_use"], L("model_use"))
                     + html.table([L("metric"), L("value")],
                                  [(text, _pct(value) if name.endswith("_share") else value)
                                   for name, value, text in use_rows], lang)))
    return html.page(lang, L("title"), meta, sections)


def _pct(share: float) -> str:
    """A share as the page shows it (the CSV keeps the fraction)."""
    return f"{share:.1%}"
