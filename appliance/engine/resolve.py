"""Step 1: what was asked — the code row for this machine, the other rows, or a symptom."""

from __future__ import annotations

from dataclasses import dataclass

from kb.normalize import code_key, looks_like_code, normalize_text
from kb.reader import KnowledgeBase
from kb.types import CodeEntry


@dataclass(frozen=True)
class Resolved:
    """The query as the knowledge base understands it."""

    text: str
    """The operator's words, cleaned."""
    normalized: str | None
    """The lookup key of a code, None for a symptom."""
    entry: CodeEntry | None
    candidates: tuple[CodeEntry, ...]
    suggestions: tuple[str, ...]
    machine_model: str
    notices: tuple[str, ...]
    search_text: str
    """What retrieval searches for: a bare code as the table writes it, else the operator's words."""
    extra: str
    """The code row's own words, searched beside the query."""
    prompt_query: str
    """The query as the model reads it: a bare code in any spelling reads as the table writes it."""


def resolve(kb: KnowledgeBase, text: str, machine_id: str, lang: str) -> Resolved:
    machine_model = kb.machine_model(machine_id) if machine_id else ""
    found = kb.lookup(text, machine_model=machine_model, lang=lang) if code_key(text) else None
    if found is not None and found.entry is None and not looks_like_code(text):
        # A known code inside a sentence ("What does A02 mean?") still finds its procedure.
        embedded = kb.find_code_in_text(text)
        if embedded is not None:
            found = kb.lookup(embedded, machine_model=machine_model, lang=lang)
    is_code = found is not None and (found.entry is not None or looks_like_code(text))
    if found is None or not is_code:
        words = normalize_text(text)
        return Resolved(text, None, None, (), (), machine_model, (), words, "", text)
    entry = found.entry
    notices: list[str] = []
    if entry is not None and entry.lang != lang:
        notices.append(f"no {lang} text for this code; shown in {entry.lang}" if lang == "en"
                       else f"此代碼沒有中文資料，以 {entry.lang} 顯示")
    if entry is None:
        notices.append(f"代碼 {text} 不在代碼表中" if lang == "zh-TW" else f"code {text} is not in the code table")
    bare = entry is not None and code_key(text) == entry.key
    return Resolved(
        text=text,
        normalized=found.key,
        entry=entry,
        candidates=tuple(found.candidates),
        suggestions=tuple(found.suggestions),
        machine_model=machine_model,
        notices=tuple(notices),
        search_text=entry.code if bare and entry is not None else normalize_text(text),
        extra=f"{entry.code} {entry.title} {entry.description}" if entry else "",
        prompt_query=entry.code if bare and entry is not None else text,
    )
