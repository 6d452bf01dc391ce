"""Manual ingestion: each format yields `Section`s; `chunking` turns them into chunks."""

from __future__ import annotations

from pathlib import Path

from kb.errors import SourceError
from kb.ingest.chunking import Section

MANUAL_SUFFIXES = {".md", ".markdown", ".txt"}


def read_sections(path: Path, relative: str) -> list[Section]:
    """Sections (heading path, page, text) of one manual file, by its suffix."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise SourceError(f"{relative}: not UTF-8 text") from error
    if suffix in {".md", ".markdown"}:
        from kb.ingest.markdown import markdown_sections

        return markdown_sections(text)
    if suffix == ".txt":
        return [Section(path=(), page=None, text=text)]
    raise SourceError(f"{relative}: manuals must be one of {sorted(MANUAL_SUFFIXES)}")
