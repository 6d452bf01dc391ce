"""Step 3: passages from the manuals, and whether anything relevant was found at all.

The relevance decision reads the evidence that exists for this query: the dense cosine
similarity when dense search ran, the KB's calibrated full-text score otherwise (dense off,
the vector index being repaired, the Chroma server down) and for Chinese, which the
embedded English sentence-transformer cannot judge. The full-text evidence is coverage
(kb.search.coverage: the IDF-weighted share of the query's terms a passage holds), against
the threshold calibrated for this KB at build time (kb.search.calibrate). Either kind of evidence above its
threshold makes the query relevant; with neither, nothing is generated and the answer
says so (`refused`). A code that is not in the code table is relevant only when a passage
names it (a manual's own alarm list): otherwise the nearest passages would be offered as its
procedure.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import RetrievalSettings
from appliance.engine.resolve import Resolved
from kb.errors import ShifuError
from kb.normalize import extract_codes
from kb.reader import KnowledgeBase
from kb.search.terms import _CJK_RUN
from kb.types import Passage


@dataclass(frozen=True)
class Retrieved:
    passages: tuple[Passage, ...] = ()
    notices: tuple[str, ...] = ()
    mode: str = "none"
    relevant: bool = False
    failed: str | None = None
    """The retrieval error, when search itself failed (the steps before still stand)."""


def relevant(passages: tuple[Passage, ...], query: str, min_similarity: float, fts_threshold: float) -> bool:
    """Whether any passage is evidence enough that the KB covers this query."""
    dense_counts = not _CJK_RUN.search(query)  # the embedded embedder reads English only
    for passage in passages:
        ev = passage.evidence
        if dense_counts and ev.dense_similarity is not None and ev.dense_similarity >= min_similarity:
            return True
        if ev.fts_coverage is not None and ev.fts_coverage >= fts_threshold:
            return True
    return False


def retrieve(kb: KnowledgeBase, resolved: Resolved, settings: RetrievalSettings) -> Retrieved:
    if not settings.enabled:
        return Retrieved(relevant=resolved.entry is not None)
    try:
        # The row shown names its model; else the machine's: other models' copies of a code row stay out.
        model = (resolved.entry.machine_model if resolved.entry is not None else "") or resolved.machine_model
        result = kb.search(resolved.search_text, settings.top_k, extra=resolved.extra, machine_model=model)
    except ShifuError as error:
        return Retrieved(notices=(str(error),), relevant=resolved.entry is not None, failed=str(error))
    passages = tuple(result.passages)
    if unknown_code(resolved):
        # A code that is not in the table means only itself: a manual that names it is evidence,
        # passages that share the word "error" or look alike are not (they would be offered as
        # its procedure).
        found = any(extract_codes(p.text, {resolved.normalized or ""}) for p in passages)
    else:
        found = (resolved.entry is not None or settings.min_score <= 0
                 or relevant(passages, resolved.text, settings.min_score, kb.fts_threshold))
    return Retrieved(passages, tuple(result.notices), result.mode, found)


def unknown_code(resolved: Resolved) -> bool:
    """The entry is a code (its shape, or a row for another model) with no row here and no choice to make."""
    return resolved.entry is None and not resolved.ambiguous and bool(resolved.normalized) and not resolved.likely
