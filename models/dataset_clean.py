"""Cleaning repair records and feedback before they become training examples.

Every dropped row is counted under a reason, so the summary says what was dropped and why:
duplicates, empty rows, rows whose repair did not fix the problem, contradictory rows (the
same repair recorded once as fixed and once as not), rows without a usable date, and codes
that the code table does not know. Technician and operator names can be scrubbed from the
free text, since a model should not learn (or repeat) who did a repair.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from kb.types import RepairRecord
from models.dataset_sources import FeedbackItem

KEEP_RESULTS = ("fixed", "escalated")
NAME_PLACEHOLDER = {"en": "a technician", "zh-TW": "技術員"}
# "陳師傅" (master Chen): a surname plus the honorific names a person.
_HONORIFIC = re.compile(r"[\u4e00-\u9fff](?:師傅|師父|工程師|組長|班長)")


@dataclass
class Cleaned:
    records: list[RepairRecord] = field(default_factory=list)
    feedback: list[FeedbackItem] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


def parse_date(text: str) -> date | None:
    """ISO dates and date-times (`2024-03-05`, `2024-03-05T08:00:00Z`, `2024/03/05`)."""
    value = text.strip().replace("/", "-")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _identity(record: RepairRecord) -> tuple[str, ...]:
    return (record.date, record.machine_id, record.code.strip().upper(), " ".join(record.symptom.split()),
            " ".join(record.action.split()))


def clean_records(records: list[RepairRecord], dropped: Counter[str]) -> list[RepairRecord]:
    """Drop empty, undated, duplicated, unsuccessful and contradictory records."""
    results: dict[tuple[str, ...], set[str]] = {}
    for record in records:
        results.setdefault(_identity(record), set()).add(record.result)
    seen: set[tuple[str, ...]] = set()
    kept = []
    for record in records:
        ident = _identity(record)
        if not record.symptom.strip() and not record.action.strip():
            dropped["empty symptom and action"] += 1
        elif parse_date(record.date) is None:
            dropped["no usable date"] += 1
        elif len(results[ident]) > 1:
            dropped["contradictory (same repair with different results)"] += 1
        elif ident in seen:
            dropped["duplicate"] += 1
        elif record.result not in KEEP_RESULTS:
            dropped[f"result '{record.result or 'empty'}' (only fixed or escalated repairs teach)"] += 1
            seen.add(ident)
        elif not record.action.strip():
            dropped["no action recorded"] += 1
            seen.add(ident)
        else:
            seen.add(ident)
            kept.append(record)
    return kept


def clean_feedback(items: list[FeedbackItem], dropped: Counter[str]) -> list[FeedbackItem]:
    """Keep answers an operator confirmed as fixed; drop the rest with their reason."""
    verdicts: dict[str, set[str]] = {}
    for item in items:
        verdicts.setdefault(item.audit_id, set()).add(item.verdict)
    seen: set[str] = set()
    kept = []
    for item in items:
        if item.answer is None or not item.answer.get("steps"):
            dropped["feedback on an answer the model did not give"] += 1
        elif len(verdicts[item.audit_id]) > 1:
            dropped["contradictory feedback (fixed and not fixed for one answer)"] += 1
        elif item.audit_id in seen:
            dropped["duplicate feedback"] += 1
        elif item.verdict != "fixed":
            dropped[f"feedback '{item.verdict}' (only answers that fixed the problem teach)"] += 1
            seen.add(item.audit_id)
        elif parse_date(item.created) is None:
            dropped["no usable date"] += 1
        else:
            seen.add(item.audit_id)
            kept.append(item)
    return kept


class NameScrubber:
    """Replaces known people's names (and surname + honorific) in free text."""

    def __init__(self, names: list[str]) -> None:
        unique = sorted({n.strip() for n in names if len(n.strip()) >= 2}, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(n) for n in unique)) if unique else None

    def __call__(self, text: str, lang: str) -> str:
        placeholder = NAME_PLACEHOLDER.get(lang, NAME_PLACEHOLDER["en"])
        if self.pattern is not None:
            text = self.pattern.sub(placeholder, text)
        return _HONORIFIC.sub(NAME_PLACEHOLDER["zh-TW"], text)

    def record(self, record: RepairRecord, lang: str) -> RepairRecord:
        return replace(record, symptom=self(record.symptom, lang), action=self(record.action, lang),
                       parts=self(record.parts, lang), technician="")

    def feedback(self, item: FeedbackItem) -> FeedbackItem:
        return replace(item, query=self(item.query, item.lang), operator="")
