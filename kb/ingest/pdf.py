"""PDF manuals (pypdf): one section per page and heading, page numbers kept.

Heading paths come from the PDF's outline (bookmarks) when it has one: a page belongs to
the deepest outline entry that starts on or before it. Without an outline, lines set in a
clearly larger font than the page body are taken as headings; the heading path carries
over to the next page, because a manual's section rarely ends at a page break.
A page without extractable text (a scan) yields nothing; OCR is out of scope.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb.errors import SourceError
from kb.ingest.chunking import Section

# A line counts as a heading when its font is this much larger than the body text.
HEADING_RATIO = 1.2
MAX_HEADING_CHARS = 120
_SPACES = re.compile(r"[ \t\u00a0]+")


@dataclass
class _Line:
    text: str
    size: float


def pdf_sections(path: Path, relative: str) -> list[Section]:
    """Sections of a PDF file; raise SourceError for an unreadable or encrypted file."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise SourceError(f"{relative}: the PDF is password-protected; export an unprotected copy")
        pages = list(reader.pages)
        outline = _outline_paths(reader)
    except SourceError:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError) as error:
        raise SourceError(f"{relative}: cannot read the PDF: {error}") from error

    page_lines: list[list[_Line]] = []
    for number, page in enumerate(pages, start=1):
        try:
            page_lines.append(_page_lines(page))
        except Exception as error:  # pypdf raises many kinds for a damaged content stream
            raise SourceError(f"{relative}: cannot read page {number}: {error}") from error
    if outline:
        return [
            Section(path=outline.get(number, ()), page=number, text=text)
            for number, lines in enumerate(page_lines, start=1)
            if (text := "\n".join(line.text for line in lines).strip())
        ]
    return _sections_by_font(page_lines)


def _outline_paths(reader: Any) -> dict[int, tuple[str, ...]]:
    """Page number -> heading path of the deepest outline entry starting on that page or before."""
    starts: list[tuple[int, tuple[str, ...]]] = []

    def walk(items: list[Any], parents: tuple[str, ...]) -> None:
        last: tuple[str, ...] = parents
        for item in items:
            if isinstance(item, list):
                walk(item, last)
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            try:
                page = reader.get_destination_page_number(item) + 1
            except Exception:  # an entry pointing nowhere is skipped, not fatal
                continue
            last = (*parents, title) if title else parents
            starts.append((page, last))

    try:
        walk(list(reader.outline), ())
    except Exception:  # a damaged outline only costs the headings
        return {}
    if not starts:
        return {}
    by_page: dict[int, tuple[str, ...]] = {}
    for page, path in sorted(starts, key=lambda item: item[0]):
        by_page[page] = path  # the last entry starting on a page wins (deepest, latest)
    result: dict[int, tuple[str, ...]] = {}
    current: tuple[str, ...] = ()
    for page in range(1, len(reader.pages) + 1):
        current = by_page.get(page, current)
        result[page] = current
    return result


def _page_lines(page: Any) -> list[_Line]:
    """The page's text lines with the largest font size seen on each line."""
    lines: list[_Line] = []
    current: list[str] = []
    sizes: list[float] = []

    def end_line() -> None:
        text = _SPACES.sub(" ", "".join(current)).strip()
        if text:
            lines.append(_Line(text=text, size=max(sizes, default=0.0)))
        current.clear()
        sizes.clear()

    def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        scale = abs(tm[3]) if tm and tm[3] else 1.0
        scale *= abs(cm[3]) if cm and cm[3] else 1.0
        parts = text.split("\n")
        for index, part in enumerate(parts):
            if index > 0:
                end_line()
            if part.strip():
                current.append(part)
                sizes.append(float(size) * scale)
            elif part:
                current.append(part)

    page.extract_text(visitor_text=visit)
    end_line()
    return lines


def _sections_by_font(page_lines: list[list[_Line]]) -> list[Section]:
    """Split pages at lines set in a larger font; heading levels are ranked over the whole file."""
    sized = [line.size for lines in page_lines for line in lines if line.size > 0]
    body_size = statistics.median(sized) if sized else 0.0
    levels = sorted(
        {round(line.size, 1) for lines in page_lines for line in lines if _is_heading(line, body_size)},
        reverse=True,
    )
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    for number, lines in enumerate(page_lines, start=1):
        body: list[str] = []
        for line in lines:
            if _is_heading(line, body_size):
                _flush(sections, stack, number, body)
                level = levels.index(round(line.size, 1))
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, line.text))
                continue
            body.append(line.text)
        _flush(sections, stack, number, body)
    return sections


def _flush(out: list[Section], stack: list[tuple[int, str]], page: int, body: list[str]) -> None:
    text = "\n".join(body).strip()
    if text:
        out.append(Section(path=tuple(t for _, t in stack), page=page, text=text))
    body.clear()


def _is_heading(line: _Line, body_size: float) -> bool:
    return (
        body_size > 0
        and line.size >= body_size * HEADING_RATIO
        and len(line.text) <= MAX_HEADING_CHARS
        and any(ch.isalpha() for ch in line.text)
    )
