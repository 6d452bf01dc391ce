"""Step 2: what fixed this code before (this machine's records first, only its model's for a model's row)."""

from __future__ import annotations

from dataclasses import dataclass

from kb.reader import KnowledgeBase
from kb.types import CodeEntry, FixCount, RepairRecord


@dataclass(frozen=True)
class History:
    records: tuple[RepairRecord, ...] = ()
    summary: tuple[FixCount, ...] = ()


def find_history(kb: KnowledgeBase, entry: CodeEntry | None, machine_id: str) -> History:
    if entry is None:
        return History()
    # A model-specific row: only that model's repairs (a generic row: every machine's).
    records, summary = kb.history(entry.key, machine_id, machine_model=entry.machine_model)
    return History(tuple(records), tuple(summary))
