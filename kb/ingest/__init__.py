"""Manual ingestion: each format yields `Section`s; `chunking` turns them into chunks.

One reader per format, chosen by the file's suffix:

| suffix               | reader               | heading paths from            | pages |
| -------------------- | -------------------- | ----------------------------- | ----- |
| .md .markdown        | `kb.ingest.markdown` | ATX headings                  | no    |
| .txt                 | (here)               | none (one section)            | no    |
| .pdf                 | `kb.ingest.pdf`      | the outline, else font sizes  | yes   |
| .html .htm .xhtml    | `kb.ingest.html`     | h1-h6                         | no    |
| .docx                | `kb.ingest.docx`     | "Heading N" / outline levels  | no    |

Tables given the manual role (.csv, .xlsx; .yaml, .json only by a mapping rule) are read by `kb.build`
row by row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kb.errors import SourceError
from kb.ingest.chunking import Section

Reader = Callable[[Path, str], list[Section]]


def _read_text(path: Path, relative: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        try:
            return path.read_text(encoding="cp950")  # Big5 text files from Taiwanese PCs
        except UnicodeDecodeError as error:
            raise SourceError(f"{relative}: not UTF-8 or Big5 text; save it as UTF-8") from error


def _markdown(path: Path, relative: str) -> list[Section]:
    from kb.ingest.markdown import markdown_sections

    return markdown_sections(_read_text(path, relative))


def _txt(path: Path, relative: str) -> list[Section]:
    text = _read_text(path, relative)
    return [Section(path=(), page=None, text=text)] if text.strip() else []


def _pdf(path: Path, relative: str) -> list[Section]:
    from kb.ingest.pdf import pdf_sections

    return pdf_sections(path, relative)


def _html(path: Path, relative: str) -> list[Section]:
    from kb.ingest.html import html_sections

    return html_sections(path, relative)


def _docx(path: Path, relative: str) -> list[Section]:
    from kb.ingest.docx import docx_sections

    return docx_sections(path, relative)


READERS: dict[str, Reader] = {
    ".md": _markdown,
    ".markdown": _markdown,
    ".txt": _txt,
    ".pdf": _pdf,
    ".html": _html,
    ".htm": _html,
    ".xhtml": _html,
    ".docx": _docx,
}
MANUAL_SUFFIXES = frozenset(READERS)


def read_sections(path: Path, relative: str) -> list[Section]:
    """Sections (heading path, page, text) of one manual file, by its suffix."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise SourceError(f"{relative}: manuals must be one of {', '.join(sorted(MANUAL_SUFFIXES))}")
    return reader(path, relative)
