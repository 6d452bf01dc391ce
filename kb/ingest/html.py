"""HTML manuals (beautifulsoup4): sections by h1-h6, paragraphs kept apart.

Scripts, styles and page furniture (nav, header, footer, aside, forms) are dropped.
Table rows become lines with cells separated by ` | `, so a code table in a manual page
stays readable in a passage. The charset comes from the file's own meta tag or BOM.
"""

from __future__ import annotations

import re
from pathlib import Path

from kb.errors import SourceError
from kb.ingest.chunking import Section

HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
SKIP = {"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "head", "svg"}
BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "blockquote",
    "table", "figure", "figcaption", "address", "details", "summary", "hr",
}
_BREAK = "\x00"  # paragraph break marker while collecting text


class _Collector:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.stack: list[tuple[int, str]] = []
        self.parts: list[str] = []

    def flush(self) -> None:
        raw = "".join(self.parts)
        paragraphs = []
        for block in raw.split(_BREAK):
            lines = [" ".join(line.split()) for line in block.split("\n")]
            text = "\n".join(line for line in lines if line)
            if text:
                paragraphs.append(text)
        if paragraphs:
            self.sections.append(Section(path=tuple(t for _, t in self.stack), page=None, text="\n\n".join(paragraphs)))
        self.parts.clear()

    def heading(self, level: int, title: str) -> None:
        self.flush()
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))


def html_sections(path: Path, relative: str) -> list[Section]:
    """Sections of an HTML file, heading paths from h1-h6."""
    from bs4 import BeautifulSoup

    try:
        raw = path.read_bytes()
        soup = BeautifulSoup(raw, "html.parser")
    except (OSError, ValueError) as error:
        raise SourceError(f"{relative}: cannot read the HTML file: {error}") from error
    collector = _Collector()
    root = soup.body or soup
    _walk(root, collector)
    collector.flush()
    return collector.sections


def _walk(node: object, out: _Collector) -> None:
    from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

    assert isinstance(node, Tag)
    for child in node.children:
        if isinstance(child, (Comment, Declaration, Doctype, ProcessingInstruction)):
            continue
        if isinstance(child, NavigableString):
            out.parts.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if name in SKIP:
            continue
        if name in HEADINGS:
            title = " ".join(child.get_text(" ").split())
            if title:
                out.heading(HEADINGS[name], title)
            continue
        if name == "br":
            out.parts.append("\n")
        elif name == "pre":
            out.parts.append(_BREAK + re.sub(r"\n\s*\n", "\n", child.get_text()) + _BREAK)
        elif name == "tr":
            cells = [" ".join(cell.get_text(" ").split()) for cell in child.find_all(["td", "th"], recursive=False)]
            out.parts.append("\n" + " | ".join(c for c in cells if c) + "\n")
        elif name in BLOCKS:
            out.parts.append(_BREAK)
            _walk(child, out)
            out.parts.append(_BREAK)
        else:
            _walk(child, out)
