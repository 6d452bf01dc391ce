"""The self-contained `report.html`: charts as PNG data URIs, tables inline, no external resource."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from appliance.report.labels import label

STYLE = """
body { font-family: "Noto Sans CJK TC", "Noto Sans TC", "Noto Sans", "DejaVu Sans", sans-serif;
       margin: 1.5rem auto; max-width: 72rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
  border-bottom: 2px solid #2f6690; }
.meta { color: #555; } figure { margin: .5rem 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef3f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: .85rem; }
@media print { h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
"""

Cell = str | int | float | None


def _cell(value: Cell) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td>{'✔' if value else ''}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.2f}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{escape(value)}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], lang: str, limit: int = 25) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows[:limit])
    note = f'<p class="note">{escape(label(lang, "shown", n=limit))}</p>' if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def chart(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img class="chart" id="chart-{escape(name)}" alt="{escape(alt)}" '
            f'src="data:image/png;base64,{data}"></figure>')


def page(lang: str, title: str, meta: Sequence[str], sections: Sequence[tuple[str, str]]) -> str:
    """One HTML document: a title, meta lines, then (heading, body HTML) sections."""
    html_lang = "zh-Hant-TW" if lang == "zh-TW" else "en"
    parts = [
        "<!DOCTYPE html>", f'<html lang="{html_lang}">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>", *(f'<p class="meta">{escape(line)}</p>' for line in meta),
    ]
    for heading, body in sections:
        parts.append(f"<section><h2>{escape(heading)}</h2>{body}</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
