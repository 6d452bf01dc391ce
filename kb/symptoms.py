"""Symptom matching: which codes a described problem most likely is, and which past repairs match it.

An operator who types "belt squeals when starting" or 「皮帶異音」 gets, before any model runs,
the code-table rows that fit (their title, description and steps, *and* the symptoms of the
repair records filed under each code, since technicians describe problems the way operators do)
and the past repairs whose symptom matches, with how often that fix worked.

Matching is full-text over words (Porter-stemmed) and CJK bigrams, the same terms as the word
index (kb.search.terms), in an in-memory FTS5 database built once per opened KB version from
its codes and records. A query in one language also searches the translations of its nearest
code-table lines (kb.search.bridge), at half weight, so an English symptom reaches Chinese
repair notes. Scores are IDF-weighted coverage of the query's terms, 0-1:

- a code's text score: the share of the query found in its rows' text;
- its records score: the share found in its best-matching record's symptom, plus a little for
  each further matching record (a problem seen often is the likelier one);
- the code's score: the larger of the two plus a quarter of the smaller, capped at 1.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from kb.search.terms import STOPWORDS, cjk_bigrams, index_terms
from kb.types import CodeEntry, RepairRecord

_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[0-9A-Za-z\u00c0-\u024f]+")
TRANSLATION_WEIGHT = 0.5
MIN_SCORE = 0.15
"""Codes and repairs below this share of the query are not shown."""


@dataclass(frozen=True)
class ScoredCode:
    """A code-table row that a symptom likely is."""

    entry: CodeEntry
    score: float

    def to_json(self) -> dict[str, Any]:
        return {**self.entry.to_json(), "score": round(self.score, 3)}


@dataclass(frozen=True)
class SimilarRepair:
    """A past repair whose symptom matches, and how often its action fixed that code."""

    record: RepairRecord
    score: float
    fixed: int
    total: int

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_json(), "code": self.record.code, "score": round(self.score, 3),
                "fix_success": {"fixed": self.fixed, "total": self.total}}


@dataclass(frozen=True)
class SymptomMatch:
    codes: tuple[ScoredCode, ...] = ()
    repairs: tuple[SimilarRepair, ...] = ()


def query_terms(text: str) -> list[str]:
    """Distinct lower-case words (no stopwords) and CJK bigrams of a symptom."""
    folded = unicodedata.normalize("NFKC", text)
    terms = [w.lower() for w in _WORD.findall(folded) if w.lower() not in STOPWORDS and len(w) > 1]
    for run in _CJK_RUN.findall(folded):
        terms.extend(cjk_bigrams(run))
    return list(dict.fromkeys(terms))[:48]


class SymptomIndex:
    """Full-text match of symptoms against one KB version's codes and records (read-only, built once)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        self._rows: dict[str, list[CodeEntry]] = {}
        self._records: list[RepairRecord] = []
        self._record_key: list[str] = []
        self._fixes: Counter[tuple[str, str]] = Counter()
        self._tries: Counter[tuple[str, str]] = Counter()

    def _open(self) -> sqlite3.Connection:
        if self._memory is not None:
            return self._memory
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        memory.execute("CREATE VIRTUAL TABLE code_docs USING fts5(key UNINDEXED, body, tokenize='porter unicode61')")
        memory.execute("CREATE VIRTUAL TABLE record_docs USING fts5(body, tokenize='porter unicode61')")
        texts: dict[str, list[str]] = defaultdict(list)
        for code, key, title, steps, safety, severity, model, lang, description, source in self.conn.execute(
            "SELECT code, key, title, steps, safety, severity, machine_model, lang, description, source "
            "FROM codes ORDER BY id"
        ):
            entry = CodeEntry(code=code, key=key, title=title, steps=tuple(json.loads(steps)),
                              safety=tuple(json.loads(safety)), severity=severity, machine_model=model,
                              lang=lang, description=description, source=source)
            self._rows.setdefault(key, []).append(entry)
            texts[key].extend([title, description, *entry.steps])
        memory.executemany("INSERT INTO code_docs VALUES (?, ?)",
                           [(key, index_terms(" ".join(parts))) for key, parts in texts.items()])
        for row in self.conn.execute(
            "SELECT date, machine_id, machine_model, code, symptom, action, parts, result, technician, duration_min, "
            "key FROM records ORDER BY date DESC, id DESC"
        ):
            record = RepairRecord(*row[:10])
            key = str(row[10] or "")
            self._records.append(record)
            self._record_key.append(key)
            if record.action:
                self._tries[(key, record.action)] += 1
                self._fixes[(key, record.action)] += record.result == "fixed"
        memory.executemany("INSERT INTO record_docs(rowid, body) VALUES (?, ?)",
                           [(i + 1, index_terms(r.symptom)) for i, r in enumerate(self._records)])
        self._memory = memory
        return memory

    def _postings(self, memory: sqlite3.Connection, term: str) -> tuple[set[str], set[int]]:
        quoted = '"' + term.replace('"', '""') + '"'
        try:
            keys = {r[0] for r in memory.execute("SELECT key FROM code_docs WHERE code_docs MATCH ?", [quoted])}
            records = {r[0] - 1 for r in memory.execute("SELECT rowid FROM record_docs WHERE record_docs MATCH ?",
                                                        [quoted])}
        except sqlite3.OperationalError:
            return set(), set()
        return keys, records

    def match(self, text: str, *, machine_model: str = "", lang: str = "en", translation: str = "",
              codes: int = 3, repairs: int = 5) -> SymptomMatch:
        """The likely codes (this machine model's first) and the similar past repairs, best first."""
        own, translated = query_terms(text), query_terms(translation)
        if not own:
            return SymptomMatch()
        with self._lock:
            memory = self._open()
            postings = {t: self._postings(memory, t) for t in dict.fromkeys([*own, *translated])}
        text_score, record_score = self._coverage(own, postings)
        # The translation is scored on its own (its many terms must not dilute the operator's words)
        # and counts at a discount: it is only the nearest code-table lines, not what was said.
        text_via, records_via = self._coverage(translated, postings)
        for key, value in text_via.items():
            text_score[key] = max(text_score.get(key, 0.0), TRANSLATION_WEIGHT * value)
        for index, value in records_via.items():
            record_score[index] = max(record_score.get(index, 0.0), TRANSLATION_WEIGHT * value)
        by_key: dict[str, list[float]] = defaultdict(list)
        for index, score in record_score.items():
            by_key[self._record_key[index]].append(score)
        best_record = max(record_score.values(), default=0.0)
        scores: dict[str, tuple[float, int]] = {}
        for key in set(text_score) | set(by_key):
            if key not in self._rows:
                continue
            found = sorted(by_key.get(key, []), reverse=True)
            support = sum(1 for s in found if s >= 0.5 * best_record)
            best = found[0] if found else 0.0
            # Each further matching record closes a little of the gap to 1; so does the other
            # half of the evidence. Neither can push a score past 1.
            records_part = best + (1 - best) * 0.04 * min(max(support - 1, 0), 5)
            high, low = max(text_score[key], records_part), min(text_score[key], records_part)
            scores[key] = (min(1.0, high + (1 - high) * 0.5 * low), support)
        ranked = sorted(scores.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
        likely = [self._row(key, machine_model, lang, score) for key, (score, _) in ranked if score >= MIN_SCORE]
        if machine_model:
            # This machine model's rows (and generic ones) first; the sort is stable.
            likely.sort(key=lambda item: item.entry.machine_model not in ("", machine_model))
        # Records are indexed newest first, so among equal matches the sort keeps the newest first.
        similar = [
            SimilarRepair(self._records[i], s, self._fixes[(self._record_key[i], self._records[i].action)],
                          self._tries[(self._record_key[i], self._records[i].action)])
            for i, s in sorted(record_score.items()) if s >= MIN_SCORE
        ]
        similar.sort(key=lambda r: (bool(machine_model) and r.record.machine_model != machine_model, -r.score))
        return SymptomMatch(tuple(likely[:codes]), tuple(_distinct(similar, repairs)))

    def _coverage(
        self, terms: list[str], postings: dict[str, tuple[set[str], set[int]]]
    ) -> tuple[dict[str, float], dict[int, float]]:
        """IDF-weighted share of `terms` found in each code's text and in each record's symptom."""
        total_keys = max(len(self._rows), 1)
        idf: dict[str, float] = {}
        for term in terms:
            keys, records = postings[term]
            df = len(keys | {self._record_key[i] for i in records})
            idf[term] = math.log(1 + total_keys / max(df, 1))
        # Terms nothing holds still count against a match, except CJK bigrams that span two
        # words (「帶異」 of 「皮帶異音」), which no text would hold.
        seen = [t for t in terms if postings[t][0] or postings[t][1]]
        unseen = [t for t in terms if t not in seen and not _CJK_RUN.fullmatch(t)]
        whole = sum(idf[t] for t in seen) + 0.5 * math.log(1 + total_keys) * len(unseen)
        text_score: defaultdict[str, float] = defaultdict(float)
        record_score: defaultdict[int, float] = defaultdict(float)
        if whole <= 0:
            return text_score, record_score
        for term in seen:
            keys, records = postings[term]
            for key in keys:
                text_score[key] += idf[term] / whole
            for index in records:
                record_score[index] += idf[term] / whole
        return text_score, record_score

    def _row(self, key: str, machine_model: str, lang: str, score: float) -> ScoredCode:
        def rank(entry: CodeEntry) -> tuple[int, int]:
            model = 0 if machine_model and entry.machine_model == machine_model else 1 if not entry.machine_model else 2
            return (model, 0 if entry.lang == lang else 1)

        return ScoredCode(min(self._rows[key], key=rank), score)


def _distinct(repairs: list[SimilarRepair], limit: int) -> list[SimilarRepair]:
    """The best repairs, one per (code, symptom, action): the same note twice tells nothing new."""
    out: list[SimilarRepair] = []
    seen: set[tuple[str, str, str]] = set()
    for item in repairs:
        mark = (item.record.code, item.record.symptom, item.record.action)
        if mark not in seen:
            seen.add(mark)
            out.append(item)
        if len(out) == limit:
            break
    return out
