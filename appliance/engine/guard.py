"""Turning raw model output — partial or final — into a `generated` object fit for an operator.

The same guard runs on every intermediate state of a stream and on the final output, so
nothing reaches a screen, a CLI line or an SSE frame before it has passed:

- only completed strings (a string still being written is never parsed, see `completed_prefix`);
- contacts (phone numbers, e-mail addresses, URLs) only when they appear in the plant's trusted
  text for this query (the code row's steps and safety notes, the repair records' actions);
  manuals are untrusted — an injected passage must not put a number or link on the screen;
- citations only of passages the model was actually shown;
- no step that tells the operator to skip, omit, bypass or bridge a safety measure (`unsafe`);
- the quality gate (`appliance.engine.quality`): no fragments, repeats or foreign scripts;
- in quote mode (`quotes` given, see models.quote), a step only as one of the numbered sentences
  the model was shown, byte for byte: its citation is that sentence's passage (not what the model
  wrote), it carries its `source`, and the gate judges it in the sentence's own language (the
  plant's words, whatever the operator's language); a sentence holding an untrusted contact is
  dropped, not edited, so a quoted step is always verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.engine import quality
from appliance.engine.partial import complete_json, completed_prefix
from kb.types import Passage
from models.quote import Quote, sentence_lang

_PHONE = re.compile(r"(?:\+?\d[\d\s().-]{6,}\d)|(?:\b0800[-\s]?[A-Z0-9-]{3,})", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)[^\s\"'<>)\]]*"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|info|biz|cn|tw|hk|de|jp|co|me|ly|xyz|example)\b(?:/[^\s\"'<>)\]]*)?"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}/[^\s\"'<>)\]]*",  # any host with a path: host.io/13101
    re.IGNORECASE,
)
_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")

# A step that asks to defeat a safety measure. English: a defeating verb within a few words of a
# safety device; Chinese: the same within a few characters. A negated form ("never bypass the
# interlock", 「切勿短接感測器」) is a warning, not an instruction, and is kept.
_DEFEAT_EN = r"(?:skip|skipping|omit|omitting|bypass|bypassing|bridge|bridging|jumper|jump(?:er)? out|override|defeat|disable|tape over|short(?:-circuit)? out|ignore)"
_DEVICE_EN = (
    r"(?:lock(?:ing)?[- ]?out|tag(?:ging)?[- ]?out|loto|interlocks?|guards?|sensors?|light curtains?|e-?stops?|"
    r"emergency stops?|safety|door switch(?:es)?|limit switch(?:es)?|fuses?|earth(?:ing)?|ground(?:ing)?|breakers?)"
)
_UNSAFE_EN = re.compile(rf"\b{_DEFEAT_EN}\b(?:\W+\w+){{0,4}}?\W+{_DEVICE_EN}\b", re.IGNORECASE)
_DEFEAT_ZH = r"(?:跳過|省略|略過|繞過|短接|跨接|旁路|停用|解除|忽略|不用|不必|無須|無需|免)"
_DEVICE_ZH = r"(?:上鎖|掛牌|安全|聯鎖|連鎖|互鎖|感測器|感應器|傳感器|光柵|光幕|護罩|防護|急停|緊急停止|門開關|限位|保險絲|接地|斷路器)"
# Telling the operator not to apply a safety measure, or that it is not needed, is the same thing.
_SKIP_EN = re.compile(
    rf"\b(?:do not|don't|never|no need to|not necessary to|needn't)\s+(?:\w+\s+){{0,2}}?"
    rf"(?:mention|follow|use|apply|perform|do|wear|bother with)\b(?:\W+\w+){{0,3}}?\W+{_DEVICE_EN}\b"
    rf"|\b{_DEVICE_EN}\b(?:\W+\w+){{0,4}}?\W+(?:is|are)\s+(?:not needed|not required|unnecessary|optional|outdated)",
    re.IGNORECASE,
)
# "... without lockout" is an instruction, unless it is forbidden ("never open it without lockout").
_WITHOUT_EN = re.compile(rf"\bwithout\s+(?:\w+\s+){{0,2}}?{_DEVICE_EN}\b", re.IGNORECASE)
_FORBIDS_EN = re.compile(r"\b(?:do not|don't|never|must not|no one may|nobody may)\b", re.IGNORECASE)
_UNSAFE_ZH = re.compile(rf"{_DEFEAT_ZH}.{{0,6}}?{_DEVICE_ZH}")
_NEGATED = re.compile(r"\b(?:do not|don't|never|must not|no)\s+(?:\w+\s+){0,2}$|(?:不可|不要|切勿|禁止|嚴禁|請勿|不得|勿)\s*$",
                      re.IGNORECASE)


@dataclass
class Guarded:
    """The guarded answer and what the guard removed (for notices and evaluation)."""

    generated: dict[str, Any] | None
    notices: list[str] = field(default_factory=list)
    raw_cites: list[int] = field(default_factory=list)
    """Every citation the model wrote, before the guard (what evaluation scores)."""
    removed_cites: int = 0
    total_cites: int = 0
    removed_contacts: int = 0
    removed_unsafe: int = 0
    dropped: int = 0
    """Strings the quality gate dropped."""
    not_quoted: int = 0
    """Quote mode: steps that were not one of the shown sentences verbatim (removed)."""
    complete: bool = True
    schema_valid: bool = True


def unsafe(text: str) -> bool:
    """True when a step tells the operator to defeat a safety measure (documented bilingual rule)."""
    if _SKIP_EN.search(text):
        return True
    without = _WITHOUT_EN.search(text)
    if without and not _FORBIDS_EN.search(text[: without.start()]):
        return True
    for pattern in (_UNSAFE_EN, _UNSAFE_ZH):
        for match in pattern.finditer(text):
            if not _NEGATED.search(text[: match.start()]):
                return True
    return False


def scrub_contacts(text: str, trusted: str) -> tuple[str, int]:
    """Replace phone numbers, e-mail addresses and URLs that the trusted text does not hold."""
    removed = 0
    trusted_digits = re.sub(r"\D", "", trusted)
    folded_trusted = trusted.casefold()

    def phone(match: re.Match[str]) -> str:
        nonlocal removed
        found = match.group(0)
        digits = re.sub(r"\D", "", found)
        if _DATE.match(found.strip()):
            return found  # 2024-03-18 is a date, not a phone number
        if len(digits) < 6 and not found.upper().startswith("0800"):
            return found  # part numbers, torques and the like are not phone numbers
        if found in trusted or (digits and digits in trusted_digits):
            return found
        removed += 1
        return "[…]"

    def link(match: re.Match[str]) -> str:
        nonlocal removed
        if match.group(0).casefold() in folded_trusted:
            return match.group(0)
        removed += 1
        return "[…]"

    text = _EMAIL.sub(link, text)
    text = _URL.sub(link, text)
    return _PHONE.sub(phone, text), removed


def parse(raw: str, *, final: bool) -> tuple[dict[str, Any], bool]:
    """The answer object in raw output (only completed strings unless the JSON is whole); complete?"""
    if final:
        try:
            data = json.loads(raw, strict=False)  # the grammar lets raw newlines into strings
            return (data if isinstance(data, dict) else {}), True
        except ValueError:
            pass
    data = complete_json(completed_prefix(raw))
    return (data if isinstance(data, dict) else {}), False


def _strings(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if isinstance(v, str | int | float) and str(v).strip()][:limit]


PROCEDURE = {"zh-TW": "標準作業程序", "en": "standard procedure"}


def guard(raw: str, shown: Sequence[Passage], lang: str, trusted: str = "", *, final: bool = True,
          quotes: Sequence[Quote] | None = None) -> Guarded:
    """Parse and guard raw model output; `shown` are the passages the model was given, `quotes` the
    sentences it could choose from (quote mode; None for a free answer).

    With `final=False` (a stream in progress) nothing is noticed or dropped for being
    incomplete: the object holds what is certain so far. When nothing usable is left of a
    final answer, `generated` is None and a notice says so.
    """
    data, complete = parse(raw, final=final)
    result = Guarded(generated=None, complete=complete)
    result.schema_valid = complete and isinstance(data.get("summary"), str) and isinstance(data.get("steps"), list)
    valid = {p.n: p.id for p in shown}

    def clean(text: str) -> str:
        text, n = scrub_contacts(text, trusted)
        result.removed_contacts += n
        return text

    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    if quotes is not None:
        steps = _quoted_steps(data, result, shown, quotes, lang, trusted, seen)
    for item in (data.get("steps") or []) if quotes is None else []:
        text = quality.strip_enumerator(str(item.get("text", "") if isinstance(item, dict) else item).strip())
        written = item.get("cites") if isinstance(item, dict) else []
        cites: list[int] = []
        for cite in written if isinstance(written, list) else []:
            result.total_cites += 1
            if isinstance(cite, int) and not isinstance(cite, bool):
                result.raw_cites.append(cite)
            if isinstance(cite, int) and not isinstance(cite, bool) and cite in valid:
                if cite not in cites:
                    cites.append(cite)
            else:
                result.removed_cites += 1
        if not text:
            continue
        if unsafe(text):
            result.removed_unsafe += 1
            continue
        text = clean(text)
        if not quality.usable(text, lang) or quality.key(text) in seen:
            result.dropped += 1
            continue
        seen.add(quality.key(text))
        steps.append({"text": text, "cites": cites})
    summary = clean(str(data.get("summary", "") or "").strip())
    if summary and unsafe(summary):
        result.removed_unsafe += 1
        summary = ""
    elif summary and not quality.usable(summary, lang):
        result.dropped += 1
        summary = ""
    elif summary and quotes is not None and not grounded_summary(summary, quotes, trusted, lang):
        result.dropped += 1  # the one sentence a quoting model writes is held to what it was shown
        summary = ""
    lists: dict[str, list[str]] = {}
    for name, limit in (("safety", 2), ("parts", 3)):
        items = _strings(data.get(name), limit)
        kept = [item for item in items if not unsafe(item)]
        result.removed_unsafe += len(items) - len(kept)
        lists[name] = [clean(item) for item in kept]
    safety, dropped_safety = quality.keep_usable(lists["safety"], lang)
    parts, dropped_parts = quality.keep_usable(lists["parts"], lang)
    result.dropped += dropped_safety + dropped_parts
    cited: list[str] = []
    for step in steps:
        for number in step["cites"]:
            if valid[number] not in cited:
                cited.append(valid[number])
    generated: dict[str, Any] = {
        "lang": lang,
        "summary": summary,
        "steps": steps,
        "safety": safety,
        "parts": parts,
        "escalate": bool(data.get("escalate", not steps)),
        "cites": cited,
    }
    generated["text"] = render(generated)
    usable = bool(steps or summary)
    if usable or not final:
        result.generated = generated
    result.notices = _notices(result, lang, usable, final)
    return result


_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)?(?![\w])")
SUMMARY_MIN_WORDS = 4


def grounded_summary(summary: str, quotes: Sequence[Quote], trusted: str, lang: str) -> bool:
    """A quote-mode summary passes when every number in it is written in the material (a small model
    turns "3 seconds" into "2"), and, in English, when it is a sentence of at least four words
    rather than a copied table header such as "Error Code Description"."""
    material = " ".join(q.text for q in quotes) + " " + trusted
    known = set(_NUMBER.findall(material))
    if any(number not in known for number in _NUMBER.findall(summary)):
        return False
    return lang != "en" or len(re.findall(r"[A-Za-z]+", summary)) >= SUMMARY_MIN_WORDS


def _quoted_steps(data: dict[str, Any], result: Guarded, shown: Sequence[Passage], quotes: Sequence[Quote],
                  lang: str, trusted: str, seen: set[str]) -> list[dict[str, Any]]:
    """Quote mode's steps: each the shown sentence it names, verbatim, with its passage and source."""
    by_n = {q.n: q for q in quotes}
    passages = {p.n: p for p in shown}
    steps: list[dict[str, Any]] = []
    for item in data.get("steps") or []:
        if not isinstance(item, dict):
            result.not_quoted += 1
            continue
        written = item.get("cites")
        for cite in written if isinstance(written, list) else []:
            result.total_cites += 1
            if isinstance(cite, int) and not isinstance(cite, bool):
                result.raw_cites.append(cite)
        number = item.get("s")
        chosen = by_n.get(number) if isinstance(number, int) and not isinstance(number, bool) else None
        if chosen is None or item.get("text") != chosen.text or (chosen.passage and chosen.passage not in passages):
            result.not_quoted += 1
            result.removed_cites += len(written) if isinstance(written, list) else 0
            continue
        if isinstance(written, list) and written != chosen.cites:
            result.removed_cites += sum(1 for cite in written if cite not in chosen.cites)
        text = chosen.text
        if unsafe(text):
            result.removed_unsafe += 1
            continue
        scrubbed, removed = scrub_contacts(text, trusted)
        if removed:
            result.removed_contacts += removed
            continue
        if not quality.usable(scrubbed, sentence_lang(text)) or quality.key(text) in seen:
            result.dropped += 1
            continue
        seen.add(quality.key(text))
        if chosen.passage:
            p = passages[chosen.passage]
            source = " > ".join(part for part in (p.source, p.section) if part)
        else:
            source = PROCEDURE.get(lang, PROCEDURE["en"])
        steps.append({"text": text, "cites": chosen.cites, "quote": chosen.n, "source": source})
    return steps


def _notices(result: Guarded, lang: str, usable: bool, final: bool) -> list[str]:
    if not final:
        return []
    zh = lang == "zh-TW"
    notices: list[str] = []
    if not result.complete and usable:
        notices.append("模型回答不完整，已保留可用部分" if zh else "the model's answer was cut short; the usable part is kept")
    if result.removed_cites:
        notices.append(f"已移除 {result.removed_cites} 個無效引用" if zh
                       else f"{result.removed_cites} citation(s) of passages the model was not shown removed")
    if result.removed_contacts:
        notices.append(f"已移除 {result.removed_contacts} 個非工廠提供的聯絡方式（電話、電郵、網址）" if zh
                       else f"{result.removed_contacts} contact(s) (phone, e-mail, URL) not from the plant's own text removed")
    if result.not_quoted:
        notices.append(f"已移除 {result.not_quoted} 個非引用原文的步驟" if zh
                       else f"{result.not_quoted} step(s) that were not a sentence the model was shown removed")
    if result.removed_unsafe:
        notices.append(f"已移除 {result.removed_unsafe} 個要求略過安全措施的步驟" if zh
                       else f"{result.removed_unsafe} step(s) telling to skip or bypass a safety measure removed")
    if not usable:
        notices.append(NO_USABLE.get(lang, NO_USABLE["en"]))
    return notices


NO_USABLE = {
    "zh-TW": "模型沒有產生可用的說明；請依照標準作業程序處理。",
    "en": "The model gave no usable explanation; follow the standard procedure.",
}


def render(generated: dict[str, Any]) -> str:
    """The answer as plain text, citations as [n]."""
    lines: list[str] = []
    if generated.get("summary"):
        lines.append(str(generated["summary"]))
    for i, step in enumerate(generated.get("steps", []), start=1):
        marks = "".join(f"[{n}]" for n in step.get("cites", []))
        source = f" ({step['source']})" if step.get("source") else ""
        lines.append(f"{i}. {step['text']}" + (f" {marks}" if marks else "") + source)
    for note in generated.get("safety", []):
        lines.append(f"! {note}")
    if generated.get("parts"):
        lines.append("Parts: " + ", ".join(generated["parts"]))
    return "\n".join(lines)
