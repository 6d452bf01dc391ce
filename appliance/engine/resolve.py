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
    ambiguous: bool = False
    """The code has rows for several machine models and none for this one: the operator chooses."""
    codes_in_entry: tuple[str, ...] = ()
    """Several known codes in one entry, as written: the operator chooses one."""
    likely: bool = False
    """`entry` is the likely code of a symptom (the model is told it is not confirmed)."""

    @property
    def waiting(self) -> bool:
        """The operator must choose (a machine or a code) before the model may explain."""
        return self.ambiguous or bool(self.codes_in_entry)


def resolve(kb: KnowledgeBase, text: str, machine_id: str, lang: str, machine_model: str = "") -> Resolved:
    """Find the code in the entry and its row for this machine (the inventory's model wins)."""
    machine_model = (kb.machine_model(machine_id) if machine_id else "") or machine_model
    found = kb.lookup(text, machine_model=machine_model, lang=lang) if code_key(text) else None
    written: list[str] = []
    if found is None or (found.entry is None and not found.ambiguous):
        # A known code inside a sentence, a URL or an alarm line ("What does A02 mean?",
        # "vendor.io/13101", "ALARM:1 [Hard limit]") still finds its procedure.
        written = kb.codes_in_text(text)
        if len(written) == 1:
            found = kb.lookup(written[0], machine_model=machine_model, lang=lang)
    if len(written) > 1:
        notice = (f"輸入中有多個代碼：{'、'.join(written)}，請選擇一個" if lang == "zh-TW"
                  else f"the entry holds several codes: {', '.join(written)}; choose one")
        return Resolved(text, None, None, (), (), machine_model, (notice,), normalize_text(text), "", text,
                        codes_in_entry=tuple(written))
    is_code = found is not None and (found.entry is not None or found.ambiguous or looks_like_code(text))
    if found is None or not is_code:
        words = normalize_text(text)
        return Resolved(text, None, None, (), (), machine_model, (), words, "", text)
    entry = found.entry
    notices: list[str] = []
    if entry is not None and entry.lang != lang:
        notices.append(f"no {lang} text for this code; shown in {entry.lang}" if lang == "en"
                       else f"此代碼沒有中文資料，以 {entry.lang} 顯示")
    if found.ambiguous:
        notices.append(_ambiguity_notice(found.candidates, lang))
    elif entry is None:
        notices.append(f"代碼 {text} 不在代碼表中" if lang == "zh-TW" else f"code {text} is not in the code table")
    shown = entry or (found.candidates[0] if found.ambiguous else None)
    bare = shown is not None and code_key(text) == shown.key
    return Resolved(
        text=text,
        normalized=found.key,
        entry=entry,
        candidates=tuple(found.candidates),
        suggestions=tuple(found.suggestions),
        machine_model=machine_model,
        notices=tuple(notices),
        search_text=shown.code if bare and shown is not None else normalize_text(text),
        extra=f"{entry.code} {entry.title} {entry.description}" if entry else "",
        prompt_query=shown.code if bare and shown is not None else text,
        ambiguous=found.ambiguous,
    )


def _ambiguity_notice(candidates: tuple[CodeEntry, ...], lang: str) -> str:
    code = candidates[0].code
    models = "、".join(c.machine_model for c in candidates) if lang == "zh-TW" else ", ".join(
        c.machine_model for c in candidates)
    if lang == "zh-TW":
        return f"{code} 依機型有不同的處理程序（{models}），請先選擇機台"
    return f"{code} has a different procedure for each machine model ({models}); choose the machine first"
