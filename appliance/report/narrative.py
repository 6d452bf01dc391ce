"""A short generated note on top of the shift handover, shown only when it passes a gate.

The handover's facts are deterministic; the model may only say them in two sentences. Its
text is withheld unless every one of these holds (the gate):
- it is usable text in the report's language (`appliance.engine.quality.usable`);
- it tells nobody to skip a safety measure (`guard.unsafe`), holds no phone number, e-mail
  address or URL (`guard.scrub_contacts` with nothing trusted) and does not copy its
  instructions (4 words or 6 Chinese characters in a row);
- it states at least one code, machine id or number, and every one it writes is one of the facts
  it was given (a model that invents an alarm, a machine or a count, or only repeats its
  instructions, is not summarising).
The model's own language list is respected: a model that does not write the language gets no
say at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from appliance.engine.guard import scrub_contacts, unsafe
from appliance.engine.quality import usable
from appliance.llm.base import GenerateOptions, LLMBackend
from appliance.report.handover import Handover
from kb.normalize import code_key

MAX_CHARS = 400
_TOKEN = re.compile(r"[A-Za-z]{1,4}[-‐－]?\d{1,5}|\d+(?:\.\d+)?")

SYSTEM = {
    "en": ("You write a two-sentence shift handover note for maintenance technicians. Use only the facts "
           "given. Do not add codes, machines, numbers, contacts or advice."),
    "zh-TW": "你為維修技術人員寫兩句交接班摘要，使用繁體中文。只能使用提供的事實，不要加入其他代碼、機台、數字、聯絡方式或建議。",
}


def facts(handover: Handover) -> list[str]:
    """The lines the model is given (English: the model's instructions are; codes are codes)."""
    lines = [f"alarms this shift: {len(handover.alarms)}", f"fixed: {handover.count('fixed')}",
             f"escalated to a technician: {handover.count('escalated')}", f"still open: {handover.count('open')}"]
    for alarm in handover.alarms:
        if alarm.state != "fixed":
            lines.append(f"{alarm.state}: machine {alarm.machine_id} code {alarm.code} {alarm.title}".rstrip())
    for machine, code, times in handover.repeated:
        lines.append(f"repeated: machine {machine} code {code} {times} times")
    return lines


def messages(handover: Handover, lang: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM.get(lang, SYSTEM["en"])},
            {"role": "user", "content": "Facts:\n" + "\n".join(f"- {line}" for line in facts(handover))}]


def _allowed(handover: Handover) -> set[str]:
    allowed: set[str] = set()
    for line in facts(handover):
        allowed.update(_keys(_TOKEN.findall(line)))
    allowed.update(_keys([a.machine_id for a in handover.alarms] + [a.code for a in handover.alarms]))
    return allowed


def _keys(tokens: Iterable[str]) -> set[str]:
    return {code_key(t) for t in tokens if t}


def _echoes(note: str, lang: str) -> bool:
    """True when the note copies its instructions (any 4 words, or 6 characters of the Chinese, in a row)."""
    system = SYSTEM.get(lang, SYSTEM["en"])
    words = re.findall(r"[\w-]+", system.lower())
    if any(" ".join(words[i:i + 4]) in " ".join(re.findall(r"[\w-]+", note.lower())) for i in range(len(words) - 3)):
        return True
    han = "".join(re.findall(r"[\u3400-\u9fff]", system))
    folded = "".join(re.findall(r"[\u3400-\u9fff]", note))
    return any(han[i:i + 6] in folded for i in range(len(han) - 5))


def gate(text: str, handover: Handover, lang: str) -> str | None:
    """The note as shown, or None when it fails the gate (see the module docstring)."""
    note = " ".join(text.split())[:MAX_CHARS]
    if not usable(note, lang) or unsafe(note):
        return None
    if scrub_contacts(note, "")[1] or _echoes(note, lang):
        return None
    stated = _keys(_TOKEN.findall(note))
    if not stated or not stated <= _allowed(handover):
        return None  # states no fact (an echo of the instructions, say), or one it was not given
    return note


def generate_note(backend: LLMBackend, handover: Handover, lang: str) -> str | None:
    """Ask the model for the note and gate it; None when the model does not write `lang` or fails the gate."""
    if lang not in backend.info().languages:
        return None
    raw = "".join(backend.stream(messages(handover, lang), GenerateOptions(max_tokens=90, temperature=0.0)))
    return gate(raw, handover, lang)
