"""Read API of one knowledge-base version: code lookup, repair history, search.

This is what the engine uses; it never writes. Opening is cheap; the dense index and the
embedding model are loaded on first use.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from kb.embed import Embedder
from kb.errors import KBError
from kb.normalize import code_key, extract_codes
from kb.search.calibrate import DEFAULT_THRESHOLD
from kb.search.dense import DenseIndex
from kb.search.hybrid import HybridSearcher, SearchResult
from kb.search.rerank import CrossEncoderReranker, Tuning
from kb.symptoms import SymptomIndex, SymptomMatch
from kb.types import CodeEntry, FixCount, RepairRecord
from kb.versions import DB_NAME


@dataclass(frozen=True)
class Lookup:
    """Result of a code lookup: the chosen row, the other rows, or near misses."""

    key: str
    entry: CodeEntry | None
    candidates: tuple[CodeEntry, ...]
    suggestions: tuple[str, ...]
    ambiguous: bool = False
    """Rows for several machine models, none generic and none for this machine: entry is None."""


class KnowledgeBase:
    """One opened KB version."""

    def __init__(
        self,
        version_dir: Path,
        embedder: Embedder | None = None,
        rrf_k: int = 60,
        tuning: Tuning | None = None,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        db_path = version_dir / DB_NAME
        if not db_path.exists():
            raise KBError(f"knowledge base {version_dir} has no {DB_NAME}; rebuild it")
        self.dir = version_dir
        try:
            self.conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
            self.meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as error:
            raise KBError(f"knowledge base {db_path} is unreadable: {error}") from error
        self.version = int(self.meta.get("version", "0"))
        self.fts_threshold = float(self.meta.get("fts_threshold", DEFAULT_THRESHOLD))
        """BM25 score above which a full-text hit counts as relevant (kb.search.calibrate)."""
        self.embedding_model = self.meta.get("embedding_model", "")
        use_dense = embedder is not None and bool(self.embedding_model)
        if use_dense and embedder is not None and embedder.model_id != self.embedding_model:
            use_dense = False
        self.dense = DenseIndex(version_dir / "chroma") if use_dense else None
        self.searcher = HybridSearcher(
            self.conn, self.dense, embedder if use_dense else None, rrf_k=rrf_k, tuning=tuning, reranker=reranker
        )
        self.symptoms = SymptomIndex(self.conn)
        """Symptom -> likely codes and similar repairs (kb.symptoms; built on first use)."""
        self._keys: list[str] | None = None
        self._key_set: frozenset[str] | None = None

    def close(self) -> None:
        if self.dense is not None:
            self.dense.close()
        self.conn.close()

    # -- codes ---------------------------------------------------------------------------
    def _rows(self, key: str) -> list[CodeEntry]:
        rows = self.conn.execute(
            "SELECT code, key, title, steps, safety, severity, machine_model, lang, description, source "
            "FROM codes WHERE key = ? ORDER BY id",
            [key],
        ).fetchall()
        return [
            CodeEntry(code=r[0], key=r[1], title=r[2], steps=tuple(json.loads(r[3])), safety=tuple(json.loads(r[4])),
                      severity=r[5], machine_model=r[6], lang=r[7], description=r[8], source=r[9])
            for r in rows
        ]

    def known_keys(self) -> list[str]:
        if self._keys is None:
            self._keys = [r[0] for r in self.conn.execute("SELECT DISTINCT key FROM codes ORDER BY key")]
        return self._keys

    def lookup(self, text: str, *, machine_model: str = "", lang: str = "zh-TW") -> Lookup:
        """Find the row for a code: the machine's model, else generic, else the only one.

        Within the chosen model the operator's language wins; the other rows are candidates.
        """
        key = code_key(text)
        rows = self._rows(key) if key else []
        if not rows:
            return Lookup(key=key, entry=None, candidates=(), suggestions=self.suggest(key))

        def rank(entry: CodeEntry) -> tuple[int, int]:
            if machine_model and entry.machine_model == machine_model:
                model_rank = 0
            elif not entry.machine_model:
                model_rank = 1
            else:
                model_rank = 2
            return (model_rank, 0 if entry.lang == lang else 1)

        ordered = sorted(rows, key=rank)
        best = ordered[0]
        if rank(best)[0] == 2 and len({r.machine_model for r in rows}) > 1:
            # Neither this machine's row nor a generic one, and several models to choose from:
            # showing any one of them would be a guess. One row per model (in the operator's
            # language when there is one) becomes a candidate; the operator picks the machine.
            per_model: dict[str, CodeEntry] = {}
            for entry in ordered:
                per_model.setdefault(entry.machine_model, entry)
            shown = tuple(per_model.values())
            if not machine_model and len({_procedure(e) for e in shown}) == 1:
                # The machine is unknown and every model that has the code has the same procedure
                # (a table row written for `CV-200 | CV-300`): nothing to choose. The row is shown
                # without a model, so its history spans those models; `candidates` lists them.
                # A known machine of another model is still asked about: the code is not its own.
                return Lookup(key=key, entry=replace(best, machine_model=""), candidates=shown, suggestions=())
            return Lookup(key=key, entry=None, candidates=shown, suggestions=(), ambiguous=True)
        return Lookup(key=key, entry=best, candidates=tuple(ordered[1:]), suggestions=())

    def find_code_in_text(self, text: str) -> str | None:
        """The first known code written inside an entry, as written (None when there is none)."""
        found = self.codes_in_text(text)
        return found[0] if found else None

    def codes_in_text(self, text: str) -> list[str]:
        """Every known code in an entry (sentence, URL, QR payload, alarm line), as written, once each."""
        if self._key_set is None:
            self._key_set = frozenset(self.known_keys())
        return extract_codes(text, self._key_set)

    def suggest(self, key: str, limit: int = 5) -> tuple[str, ...]:
        """Nearest known codes (as written) for an unknown key."""
        if not key:
            return ()
        from rapidfuzz import fuzz, process

        keys = self.known_keys()
        matches = process.extract(key, keys, scorer=fuzz.ratio, limit=limit, score_cutoff=50)
        codes: list[str] = []
        for match_key, _score, _ in matches:
            row = self.conn.execute("SELECT code FROM codes WHERE key = ? LIMIT 1", [match_key]).fetchone()
            if row and row[0] not in codes:
                codes.append(row[0])
        return tuple(codes)

    def likely(self, text: str, *, machine_model: str = "", lang: str = "en") -> SymptomMatch:
        """For a symptom: likely codes and similar repairs; its translation via the code table helps."""
        return self.symptoms.match(text, machine_model=machine_model, lang=lang,
                                   translation=self.searcher.bridge.expand(text, 2))

    # -- machines and history --------------------------------------------------------------
    def machine_model(self, machine_id: str) -> str:
        row = self.conn.execute("SELECT machine_model FROM machines WHERE machine_id = ?", [machine_id]).fetchone()
        return str(row[0]) if row and row[0] else ""

    def history(
        self, key: str, machine_id: str = "", limit: int = 5, *, machine_model: str = ""
    ) -> tuple[list[RepairRecord], list[FixCount]]:
        """Recent repairs for a code (this machine's first) and the most frequent fixes.

        With `machine_model` (the row shown is model-specific) only that model's records count:
        an injection moulding machine's E-001 repairs say nothing about a conveyor's E-001.
        """
        rows = self.conn.execute(
            "SELECT date, machine_id, machine_model, code, symptom, action, parts, result, technician, duration_min "
            "FROM records WHERE key = ? AND (? = '' OR machine_model = ?) ORDER BY (machine_id = ?) DESC, date DESC",
            [key, machine_model, machine_model, machine_id],
        ).fetchall()
        records = [RepairRecord(*row) for row in rows]
        counts: Counter[str] = Counter()
        last: dict[str, str] = {}
        for record in records:
            if record.result == "fixed" and record.action:
                counts[record.action] += 1
                last[record.action] = max(last.get(record.action, ""), record.date)
        summary = [FixCount(action=a, count=c, last_date=last[a]) for a, c in counts.most_common(3)]
        return records[:limit], summary

    def records_between(self, first: str = "", last: str = "9999-12-31") -> list[tuple[str, RepairRecord]]:
        """Every repair record dated first..last (ISO dates, inclusive), with its code's key, oldest first."""
        rows = self.conn.execute(
            "SELECT key, date, machine_id, machine_model, code, symptom, action, parts, result, technician,"
            " duration_min FROM records WHERE substr(date, 1, 10) BETWEEN ? AND ? ORDER BY date, id",
            [first, last],
        ).fetchall()
        return [(str(row[0] or ""), RepairRecord(*row[1:])) for row in rows]

    def machines(self) -> dict[str, tuple[str, str]]:
        """The inventory: machine_id -> (machine_model, line)."""
        rows = self.conn.execute("SELECT machine_id, machine_model, line FROM machines").fetchall()
        return {str(r[0]): (str(r[1] or ""), str(r[2] or "")) for r in rows}

    def code_spellings(self) -> dict[str, str]:
        """Each code's key -> the code as the table writes it (its first row)."""
        rows = self.conn.execute("SELECT key, code FROM codes ORDER BY id DESC").fetchall()
        return {str(key): str(code) for key, code in rows}

    # -- search ----------------------------------------------------------------------------
    def search(self, text: str, k: int = 5, *, mode: str = "hybrid", extra: str = "",
               machine_model: str = "") -> SearchResult:
        """Top-k passages; a text stored once per model is one passage, only this model's when known."""
        return self.searcher.search(text, k, mode=mode, extra=extra, machine_model=machine_model)

    def counts(self) -> dict[str, int]:
        tables = ("codes", "records", "machines", "documents", "chunks", "embeddings")
        return {t: int(self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # noqa: S608


def _procedure(entry: CodeEntry) -> tuple[object, ...]:
    """What an operator would read of a row: two rows with the same are one procedure."""
    return (entry.lang, entry.title, entry.steps, entry.safety, entry.severity)
