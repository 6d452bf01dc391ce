"""Step 1b: for a symptom, the likely codes and the similar past repairs (before the model).

Only a symptom is matched: an entry that named a code (known, unknown or ambiguous) or
several codes already says what it is about.
"""

from __future__ import annotations

from appliance.engine.resolve import Resolved
from kb.reader import KnowledgeBase
from kb.symptoms import SymptomMatch


def match_symptom(kb: KnowledgeBase, resolved: Resolved, lang: str) -> SymptomMatch:
    """Likely codes (this machine model first) and similar repairs for a symptom; empty for a code."""
    if resolved.normalized is not None or resolved.codes_in_entry:
        return SymptomMatch()
    return kb.likely(resolved.search_text, machine_model=resolved.machine_model, lang=lang)
