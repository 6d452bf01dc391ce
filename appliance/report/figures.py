"""The supervisor's figures: one definition each, pure functions over a `Dataset`.

- `pareto`: alarms and questions by code. One row per (code key, machine model, source);
  `source` is `question` (audit rows from the keyboard, scanner, CLI, HTTP) or `alarm`
  (an alarm row counts 1 + the repeats the intake folded into it). Answers prepared in the
  background for alarms are not counted again. Rows with no code (symptoms, unparsed alarms)
  are left out. `share` = count / all counted; `cumulative_share` runs down the rows sorted
  by count (descending, then code, model, source).
- `repeats`: the same code on the same machine again within `window_days` of its previous
  occurrence, per timeline: alarms (`alarm`) and repair records (`record`) separately. A
  record followed within the window by another of the same code and machine is a fix that
  did not hold (its action is listed); an alarm the operator marked "fixed" that came back
  within the window likewise (counted).
- `repair_time`: minutes per code, from repair records (`duration_min`, source `record`) and
  from an alarm's reception to the first "fixed" press linked to it (source `operator`);
  median and p90 by `percentile` (linear between closest ranks).
- `first_time_fix`: per (code, machine model), incidents with feedback (an alarm when the
  feedback names one, else the answer); first-time fix = the first verdict was "fixed".
  `review` marks procedures with at least `min_feedback` incidents of which at least
  `review_share` ended first in "not fixed" or "call technician".
- `gaps`: questions refused (nothing relevant found) with no likely code offered, grouped by
  wording (`group_texts`); count and an example per group, largest first.
- `model_use`: over the answers (questions and alarm answers, not evaluation runs): share
  with a generated part, withheld by the quality gate (the model answered, nothing passed),
  the gate's drops (generated strings it dropped, summed over the answers: audit `gate_dropped`),
  cache hits among generated answers, answer latency p50/p95 (`timings.total`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from appliance.report.data import QUESTION_SOURCES, Dataset

DAY = 86400.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- Pareto -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParetoRow:
    code: str
    machine_model: str
    source: str
    count: int
    share: float
    cumulative_share: float


def pareto(data: Dataset) -> list[ParetoRow]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for a in data.audit:
        if a.key and a.source in QUESTION_SOURCES:
            counts[(a.key, a.machine_model, "question")] += 1
    for alarm in data.alarms:
        counts[(alarm.key, alarm.machine_model, "alarm")] += 1 + alarm.repeats
    total = sum(counts.values())
    rows: list[ParetoRow] = []
    running = 0
    for (key, model, source), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        running += count
        rows.append(ParetoRow(data.label(key), model, source, count, count / total, running / total))
    return rows


def pareto_by_code(rows: Iterable[ParetoRow]) -> list[tuple[str, int, float]]:
    """The chart's bars: (code, count, cumulative share) with models and sources summed."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts[row.code] += row.count
    total = sum(counts.values())
    out, running = [], 0
    for code, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        running += count
        out.append((code, count, running / total))
    return out


# -- repeat offenders -----------------------------------------------------------------------
@dataclass(frozen=True)
class RepeatRow:
    source: str
    machine_id: str
    machine_model: str
    line: str
    code: str
    occurrences: int
    repeats: int
    fixes_not_held: int
    failed_fixes: str
    """The repair actions (records) that did not hold, most frequent first, ' | '-separated."""
    last_seen: str


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).astimezone().date().isoformat()


def repeats(data: Dataset, window_days: float = 30) -> list[RepeatRow]:
    window = window_days * DAY
    rows: list[RepeatRow] = []
    fixed_alarms = {f.alarm_id for f in data.feedback if f.verdict == "fixed" and f.alarm_id is not None}
    by_alarm: dict[tuple[str, str, str], list[tuple[float, int]]] = defaultdict(list)
    for alarm in data.alarms:
        if alarm.machine_id:
            by_alarm[(alarm.machine_id, alarm.machine_model, alarm.key)].append((alarm.received, alarm.id))
    for (machine, model, key), events in by_alarm.items():
        events.sort()
        again = not_held = 0
        for (before, before_id), (after, _id) in zip(events, events[1:], strict=False):
            if after - before <= window:
                again += 1
                not_held += before_id in fixed_alarms
        if again:
            rows.append(RepeatRow("alarm", machine, model, data.lines.get(machine, ""), data.label(key),
                                  len(events), again, not_held, "", _day(events[-1][0])))
    by_record: dict[tuple[str, str, str], list[tuple[datetime, str, str]]] = defaultdict(list)
    for r in data.repairs:
        if r.machine_id and r.key:
            by_record[(r.machine_id, r.machine_model, r.key)].append(
                (datetime.fromisoformat(r.date), r.action, r.result))
    for (machine, model, key), records in by_record.items():
        records.sort(key=lambda item: item[0])
        again = 0
        failed: Counter[str] = Counter()
        for (done, action, result), (next_one, _a, _r) in zip(records, records[1:], strict=False):
            if (next_one - done).total_seconds() <= window:
                again += 1
                if result == "fixed" and action:
                    failed[action] += 1
        if again:
            text = " | ".join(a for a, _ in sorted(failed.items(), key=lambda kv: (-kv[1], kv[0])))
            rows.append(RepeatRow("record", machine, model, data.lines.get(machine, ""), data.label(key),
                                  len(records), again, sum(failed.values()), text, records[-1][0].date().isoformat()))
    rows.sort(key=lambda r: (-r.repeats, r.source, r.machine_id, r.code))
    return rows


# -- time to repair -------------------------------------------------------------------------
@dataclass(frozen=True)
class RepairTimeRow:
    code: str
    source: str
    n: int
    median_min: float
    p90_min: float


def repair_time(data: Dataset) -> list[RepairTimeRow]:
    minutes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in data.repairs:
        if r.key and r.duration_min is not None and r.duration_min >= 0:
            minutes[(r.key, "record")].append(float(r.duration_min))
    first_fixed: dict[int, float] = {}
    for f in data.feedback:  # ordered by id: the first press wins
        if f.verdict == "fixed" and f.alarm_id is not None:
            first_fixed.setdefault(f.alarm_id, f.created)
    for alarm in data.alarms:
        pressed = first_fixed.get(alarm.id)
        if pressed is not None and pressed >= alarm.received:
            minutes[(alarm.key, "operator")].append((pressed - alarm.received) / 60)
    rows = []
    for (key, source), values in minutes.items():
        median, p90 = percentile(values, 50), percentile(values, 90)
        assert median is not None and p90 is not None
        rows.append(RepairTimeRow(data.label(key), source, len(values), median, p90))
    rows.sort(key=lambda r: (-r.n, r.code, r.source))
    return rows


# -- first-time fix -------------------------------------------------------------------------
@dataclass(frozen=True)
class FirstFixRow:
    code: str
    machine_model: str
    incidents: int
    fixed_first: int
    not_fixed_first: int
    call_technician_first: int
    first_time_fix_rate: float
    review: bool


def first_time_fix(data: Dataset, min_feedback: int = 3, review_share: float = 0.5) -> list[FirstFixRow]:
    audit = {a.id: a for a in data.audit}
    alarms = {a.id: a for a in data.alarms}
    first: dict[tuple[str, int], tuple[str, str, str]] = {}  # incident -> (key, model, first verdict)
    for f in data.feedback:
        if f.alarm_id is not None and f.alarm_id in alarms:
            alarm = alarms[f.alarm_id]
            incident, key, model = ("alarm", f.alarm_id), alarm.key, alarm.machine_model
        elif f.audit_id is not None and f.audit_id in audit:
            row = audit[f.audit_id]
            incident, key, model = ("audit", f.audit_id), row.key, row.machine_model
        else:
            continue
        if key:
            first.setdefault(incident, (key, model, f.verdict))
    tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for key, model, verdict in first.values():
        tally[(key, model)][verdict] += 1
    rows = []
    for (key, model), counts in tally.items():
        n = sum(counts.values())
        failed = counts["not_fixed"] + counts["call_technician"]
        rows.append(FirstFixRow(data.label(key), model, n, counts["fixed"], counts["not_fixed"],
                                counts["call_technician"], counts["fixed"] / n,
                                n >= min_feedback and failed / n >= review_share))
    rows.sort(key=lambda r: (not r.review, r.first_time_fix_rate, -r.incidents, r.code, r.machine_model))
    return rows


# -- knowledge-base gaps ----------------------------------------------------------------------
@dataclass(frozen=True)
class GapRow:
    group: str
    count: int
    example_query: str
    variants: int


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORDS = re.compile(r"[a-z\u00c0-\u024f]+|\d+")


def wording(text: str) -> frozenset[str]:
    """The terms two questions share when worded alike: words (any number as one token) and CJK bigrams."""
    folded = unicodedata.normalize("NFKC", text).lower()
    terms = {"#" if w.isdigit() else w for w in _WORDS.findall(folded) if len(w) > 1 or w.isdigit()}
    for run in _CJK.findall(folded):
        if len(run) == 1:
            terms.add(run)
        else:
            terms.update(run[i:i + 2] for i in range(len(run) - 1))
    return frozenset(terms)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def group_texts(texts: Sequence[str], threshold: float = 0.5, candidates: int = 200) -> list[list[str]]:
    """Group texts whose terms overlap (Jaccard >= threshold) with a group's first, most asked text.

    Distinct wordings are taken most frequent first and join the most similar group (the
    oldest on a tie) or start one. Only groups that can reach the threshold are compared:
    with terms in one global order (rarest first), two sets with Jaccard >= t share one of
    each set's first |s| - ceil(t*|s|) + 1 terms (prefix filtering), so each group is indexed
    by its prefix and each wording looks up its own; the cost grows with the number of
    wordings, not its square (`candidates` bounds one term's list for pathological input).
    """
    by_text: dict[str, list[str]] = defaultdict(list)
    for text in texts:
        by_text[" ".join(unicodedata.normalize("NFKC", text).lower().split())].append(text)
    terms_of = {norm: wording(norm) for norm in by_text}
    document_freq: Counter[str] = Counter()
    for terms in terms_of.values():
        document_freq.update(terms)

    def prefix(terms: frozenset[str]) -> list[str]:
        ordered = sorted(terms, key=lambda t: (document_freq[t], t))
        return ordered[: len(ordered) - math.ceil(threshold * len(ordered)) + 1] if ordered else [""]

    reps: list[frozenset[str]] = []
    members: list[list[str]] = []
    index: dict[str, list[int]] = defaultdict(list)
    for norm in sorted(by_text, key=lambda t: (-len(by_text[t]), t)):
        terms = terms_of[norm]
        best, best_score = -1, -1.0
        for term in prefix(terms):
            for gid in index[term][:candidates]:
                score = jaccard(terms, reps[gid])
                if score >= threshold and (score > best_score or (score == best_score and gid < best)):
                    best, best_score = gid, score
        if best < 0:
            best = len(reps)
            reps.append(terms)
            members.append([])
            for term in prefix(terms):
                index[term].append(best)
        members[best].extend(by_text[norm])
    return members


def gaps(data: Dataset, threshold: float = 0.5) -> list[GapRow]:
    refused = [a.query for a in data.audit
               if a.source in QUESTION_SOURCES and a.refused and not a.likely_codes and a.query.strip()]
    rows = []
    for members in group_texts(refused, threshold):
        spelled = Counter(members)
        example = max(spelled, key=lambda t: (spelled[t], -len(t)))
        rows.append(GapRow(members[0], len(members), example, len(spelled)))
    rows.sort(key=lambda r: (-r.count, r.group))
    return rows


# -- model use -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelUse:
    answers: int
    generated: int
    gate_withheld: int
    gate_dropped: int
    """Generated strings (steps, summaries, safety notes, parts) the quality gate dropped."""
    cached: int
    refused: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    @property
    def generated_share(self) -> float:
        return self.generated / self.answers if self.answers else 0.0

    @property
    def gate_withheld_share(self) -> float:
        ran = self.generated + self.gate_withheld
        return self.gate_withheld / ran if ran else 0.0

    @property
    def cache_hit_share(self) -> float:
        return self.cached / self.generated if self.generated else 0.0


def model_use(data: Dataset) -> ModelUse:
    answers = [a for a in data.audit if a.source != "eval"]
    latencies = [a.total_ms for a in answers if a.total_ms is not None]
    return ModelUse(
        answers=len(answers),
        generated=sum(a.generated for a in answers),
        gate_withheld=sum(a.model_available and not a.generated for a in answers),
        gate_dropped=sum(a.gate_dropped for a in answers),
        cached=sum(a.cached for a in answers),
        refused=sum(a.refused for a in answers),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
    )
