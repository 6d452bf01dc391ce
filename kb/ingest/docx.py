"""Word manuals (python-docx): heading styles become heading paths; tables become lines.

A paragraph is a heading when its style is a built-in heading ("Heading 1".."Heading 9",
"Title"; Word stores these English names even in a Chinese Word) or when it carries an
outline level. Paragraphs and tables are read in document order.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from kb.errors import SourceError
from kb.ingest.chunking import Section

_HEADING_STYLE = re.compile(r"^(?:heading|標題|标题)\s*([1-9])$", re.IGNORECASE)


def heading_level(paragraph: Any) -> int | None:
    """1-9 for a heading paragraph, 0 for the document title, None for body text."""
    style = paragraph.style
    name = (style.name if style is not None else "") or ""
    if name.strip().lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name.strip())
    if match:
        return int(match.group(1))
    level = _outline_level(paragraph._p.pPr)
    while level is None and style is not None:
        level = _outline_level(style.element.pPr)
        style = style.base_style
    return level


def _outline_level(ppr: Any) -> int | None:
    if ppr is None:
        return None
    from docx.oxml.ns import qn

    node = ppr.find(qn("w:outlineLvl"))
    if node is None:
        return None
    value = int(node.get(qn("w:val"), "9"))
    return value + 1 if value < 9 else None  # 9 means "body text"


def docx_sections(path: Path, relative: str) -> list[Section]:
    """Sections of a .docx file."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise SourceError(f"{relative}: cannot open the Word file (is it a .docx?): {error}") from error
    except Exception as error:  # python-docx raises its own types for a package that is not Word
        raise SourceError(f"{relative}: cannot open the Word file: {error}") from error

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []

    def flush() -> None:
        text = "\n\n".join(body).strip()
        if text:
            sections.append(Section(path=tuple(t for _, t in stack), page=None, text=text))
        body.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            level = heading_level(block)
            if level is None:
                body.append(text)
                continue
            flush()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, " ".join(text.split())))
        elif isinstance(block, Table):
            rows = []
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = " ".join(cell.text.split())
                    if value and (not cells or cells[-1] != value):  # merged cells repeat their text
                        cells.append(value)
                if cells:
                    rows.append(" | ".join(cells))
            if rows:
                body.append("\n".join(rows))
    flush()
    return sections
