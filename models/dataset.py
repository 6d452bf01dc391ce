"""Repair records and operator feedback -> chat JSONL for fine-tuning (`shifu data build`).

Every example's context is built by `models.prompt.build_context` with the engine's
`ContextLayout` (`LAYOUT`: two past repairs, the most frequent fix, and the first
`retrieval.prompt_passages` passages), then laid out by `models.prompt.messages`: training and
inference share one function, so they can never drift apart. For a repair record:

- the user turn is what the engine would have built when the repair was asked about: the
  query is the code plus the recorded symptom, the machine is `id (model)`, the code's
  standard procedure and safety notes come from the code table (the row for the machine's
  model and the record's language), and the past repairs are the records of that code
  *before* this one, as the KB holds them (not_fixed and duplicate rows too; only the cleaned
  records become examples), ordered and counted as `KnowledgeBase.history` does (this
  machine's first, newest first; fixes by frequency); with `--scrub-names` their names are
  replaced, the one way the prompt differs from the engine's;
- the passages are the ones the engine would show for that query: given a built KB (`kb`,
  normally the active version), it is searched exactly as the engine searches it (the code as
  written for a bare code, else the normalised query; `extra` = code, title and description;
  `top_k` results, of which the layout keeps the first). Without a KB the fallback is one
  passage, [1], the code-table row as the KB indexes it (what a code query retrieves first);
  `summary.json` says which was used;
- the target answer follows the answer schema: the summary names the title, the symptom and
  the fix the technician recorded; the steps are the standard procedure (at most four), each
  citing the shown passages whose text holds it; safety comes from the table; parts from the
  record; escalate is true when the record was escalated;
- in quote mode (`answer_mode="quote"`, the mode the adapter will run in) the prompt is quote
  mode's layout and the target is what its grammar allows: the chosen sentence numbers (the
  standard procedure's sentences, at most four; for a confirmed answer, its quoted steps that
  are among the shown sentences), each with its verbatim text and passage, and a short summary
  (the recorded fix) only when the model writes the record's language (`languages`).

Answers an operator marked "fixed" in a kiosk export (`shifu export`) are kept as they were
generated, with the context rebuilt the same way; their citations are re-derived by the same
rule (the passages retrieved then are not in the export).

The latest months are held out as the evaluation split (time-based, never random), and a
summary says what was kept, what was dropped and why, which codes are covered and how many
tokens the examples take with the base model's tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb.normalize import code_key, normalize_text
from kb.types import CodeEntry, FixCount, Passage, RepairRecord
from models import prompt, quote
from models.dataset_clean import Cleaned, NameScrubber, clean_feedback, clean_records, parse_date
from models.dataset_sources import FeedbackItem, Sources

if TYPE_CHECKING:
    from kb.reader import KnowledgeBase

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_PART_SPLIT = re.compile(r"\s*[,;、，；|]\s*")
LAYOUT = prompt.ContextLayout(records=2, fixes=1, passages=3)
"""The engine's layout with the default `retrieval.prompt_passages` (3); pass the plant's own if it differs."""
TOP_K = 5
"""The default `retrieval.top_k`: how many passages the engine's search returns before the layout cuts them."""

Tokenizer = Callable[[str], int]


@dataclass
class Example:
    messages: list[dict[str, str]]
    date: date
    code: str
    kind: str  # record | feedback
    origin: str

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages,
                "meta": {"date": self.date.isoformat(), "code": self.code, "kind": self.kind, "origin": self.origin}}


@dataclass
class Summary:
    rows_read: int = 0
    kept: int = 0
    train: int = 0
    eval: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    eval_from: str = ""
    tokens: dict[str, int] = field(default_factory=dict)
    passages: str = ""
    warnings: list[str] = field(default_factory=list)
    system_prompt_sha256: str = ""
    answer_mode: str = "free"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def detect_lang(text: str) -> str:
    return "zh-TW" if _CJK.search(text) else "en"


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class CodeTable:
    """The code rows by lookup key; picks the row the engine would pick."""

    def __init__(self, entries: list[CodeEntry]) -> None:
        self.by_key: dict[str, list[CodeEntry]] = {}
        for entry in entries:
            self.by_key.setdefault(entry.key, []).append(entry)

    def pick(self, code: str, machine_model: str, lang: str) -> CodeEntry | None:
        rows = self.by_key.get(code_key(code), [])
        if not rows:
            return None

        def rank(entry: CodeEntry) -> tuple[int, int]:
            model = 0 if entry.machine_model == machine_model else 1 if not entry.machine_model else 2
            return (model, 0 if entry.lang == lang else 1)

        return sorted(rows, key=rank)[0]


def code_passage(entry: CodeEntry) -> prompt.PromptPassage:
    """The code-table row as the KB indexes it (see kb.build's code chunks), numbered 1."""
    section = f"{entry.code} {entry.title}" + (f" ({entry.machine_model})" if entry.machine_model else "")
    lines = [f"{entry.code} {entry.title}", *([entry.description] if entry.description else []),
             *(step for step in entry.steps if step not in entry.description)]
    return prompt.PromptPassage(1, entry.source, section, "\n".join(lines))


def history(earlier: list[RepairRecord], machine_id: str) -> tuple[list[RepairRecord], list[FixCount]]:
    """Past repairs of one code ordered and counted as `KnowledgeBase.history` returns them."""
    ordered = sorted(earlier, key=lambda r: r.date, reverse=True)
    ordered.sort(key=lambda r: r.machine_id != machine_id)  # stable: this machine first, newest first
    counts: Counter[str] = Counter()
    last: dict[str, str] = {}
    for record in ordered:
        if record.result == "fixed" and record.action:
            counts[record.action] += 1
            last[record.action] = max(last.get(record.action, ""), record.date)
    return ordered, [FixCount(action=a, count=c, last_date=last[a]) for a, c in counts.most_common(3)]


def passages(query: str, entry: CodeEntry, kb: KnowledgeBase | None,
             top_k: int) -> list[Passage | prompt.PromptPassage]:
    """The passages the engine would retrieve for this query, or the code-row fallback without a KB."""
    if kb is None:
        return [code_passage(entry)]
    # As the engine: a bare code searches as the table writes it, a sentence as normalised text.
    text = entry.code if code_key(query) == entry.key else normalize_text(query)
    return list(kb.search(text, top_k, extra=f"{entry.code} {entry.title} {entry.description}").passages)


def cites(text: str, shown: Sequence[prompt.PromptPassage]) -> list[int]:
    """The shown passages whose text (as far as the prompt shows it) holds this step."""
    needle = " ".join(text.split()).casefold()
    held = [p.n for p in shown if needle and needle in " ".join(p.text.split())[: prompt.PASSAGE_CHARS].casefold()]
    return held[: prompt.MAX_CITES]


def context(entry: CodeEntry, query: str, machine_id: str, machine_model: str, earlier: list[RepairRecord],
            found: Sequence[Passage | prompt.PromptPassage], layout: prompt.ContextLayout,
            answer_mode: str = "free") -> prompt.PromptContext:
    """The prompt context the engine would build for this query (see the module docstring)."""
    records, fixes = history(earlier, machine_id)
    return prompt.build_context(query=query, lang=entry.lang, machine_id=machine_id, machine_model=machine_model,
                                entry=entry, records=records, fixes=fixes, passages=found, layout=layout,
                                answer_mode=answer_mode)


def quote_answer(ctx: prompt.PromptContext, free: dict[str, Any], languages: Sequence[str]) -> dict[str, Any]:
    """A free target turned into quote mode's: its steps that are shown sentences (else the standard
    procedure's sentences), by number; the summary only in a language the model writes."""
    quotes = prompt.quotes(ctx)
    by_text = {q.text: q.n for q in quotes}
    chosen = [by_text[str(s.get("text", ""))] for s in free.get("steps", []) if str(s.get("text", "")) in by_text]
    if not chosen:
        chosen = [q.n for q in quotes if q.passage == 0]
    summary = str(free.get("summary", "")) if ctx.lang in languages else ""
    return quote.target(quotes, list(dict.fromkeys(chosen)), shorten(summary, quote.SUMMARY_CHARS))


def record_answer(record: RepairRecord, entry: CodeEntry,
                  shown: Sequence[prompt.PromptPassage] = ()) -> dict[str, Any]:
    """The target answer for a repair record (see the module docstring)."""
    symptom = " ".join(record.symptom.split())
    action = " ".join(record.action.split())
    escalated = record.result == "escalated"
    if entry.lang == "zh-TW":
        fix = f"過去曾上報處理：{action}" if escalated else f"過去的修復方式：{action}"
        summary = f"{entry.title}。" + (f"症狀：{symptom}。" if symptom else "") + fix
    else:
        fix = f"Escalated before: {action}" if escalated else f"Fixed before by: {action}"
        summary = f"{entry.title}. " + (f"Symptom: {symptom}. " if symptom else "") + fix
    parts = [shorten(p, 48) for p in _PART_SPLIT.split(record.parts.strip()) if p.strip()][:4]
    return {
        "summary": shorten(summary, 200),
        "steps": [{"text": shorten(step, 160), "cites": cites(step, shown)}
                  for step in entry.steps[: prompt.MAX_STEPS]],
        "safety": [shorten(note, 120) for note in entry.safety[:3]],
        "parts": parts,
        "escalate": escalated,
    }


def feedback_answer(answer: dict[str, Any], shown: Sequence[prompt.PromptPassage] = ()) -> dict[str, Any]:
    """A confirmed answer, cut to the schema's limits, its citations re-derived from the shown passages."""
    steps = [s for s in answer.get("steps", []) if isinstance(s, dict) and s.get("text")]
    return {
        "summary": shorten(str(answer.get("summary", "")), 200),
        "steps": [{"text": shorten(str(s["text"]), 160), "cites": cites(str(s["text"]), shown)}
                  for s in steps[: prompt.MAX_STEPS]],
        "safety": [shorten(str(n), 120) for n in answer.get("safety", [])[:3]],
        "parts": [shorten(str(p), 48) for p in answer.get("parts", [])[:4]],
        "escalate": bool(answer.get("escalate", False)),
    }


def build_examples(sources: Sources, *, scrub_names: bool = False, kb: KnowledgeBase | None = None,
                   top_k: int = TOP_K, layout: prompt.ContextLayout = LAYOUT, answer_mode: str = "free",
                   languages: Sequence[str] = ("zh-TW", "en")) -> tuple[list[Example], Cleaned]:
    """Clean the sources and lay out one example per kept record or confirmed answer.

    `kb`, `top_k` and `layout` are what the engine retrieves from and shows (see the module docstring);
    `answer_mode` and `languages` are how the adapter's base answers (models.toml).
    """

    def target(ctx: prompt.PromptContext, free: dict[str, Any]) -> dict[str, Any]:
        return quote_answer(ctx, free, languages) if answer_mode == "quote" else free

    cleaned = Cleaned()
    cleaned.records = clean_records(sources.records, cleaned.dropped)
    cleaned.feedback = clean_feedback(sources.feedback, cleaned.dropped)
    table = CodeTable(sources.codes)
    scrub = NameScrubber([r.technician for r in sources.records] + [f.operator for f in sources.feedback]) \
        if scrub_names else None
    models = {r.machine_id: r.machine_model for r in sources.records if r.machine_id and r.machine_model}
    # History is every record the KB would hold (not only the ones clean enough to teach): the
    # engine shows not_fixed and duplicate rows too. Undated rows cannot be placed in time.
    by_key: dict[str, list[RepairRecord]] = {}
    for record in sources.records:
        if parse_date(record.date) is not None:
            by_key.setdefault(code_key(record.code), []).append(record)

    def earlier(key: str, before: date) -> list[RepairRecord]:
        rows = [r for r in by_key.get(key, []) if (parse_date(r.date) or before) < before]
        return [scrub.record(r, detect_lang(r.symptom + r.action)) for r in rows] if scrub else rows

    examples: list[Example] = []
    for record in cleaned.records:
        lang = detect_lang(record.symptom + record.action)
        entry = table.pick(record.code, record.machine_model, lang)
        if entry is None:
            cleaned.dropped["code not in the code table"] += 1
            continue
        when = parse_date(record.date)
        assert when is not None  # clean_records dropped undated rows
        shown = scrub.record(record, lang) if scrub else record
        query = f"{record.code} {' '.join(shown.symptom.split())}".strip()
        ctx = context(entry, query, record.machine_id, record.machine_model or models.get(record.machine_id, ""),
                      earlier(entry.key, when), passages(query, entry, kb, top_k), layout, answer_mode)
        examples.append(Example(prompt.messages(ctx, target(ctx, record_answer(shown, entry, ctx.passages))), when,
                                entry.code,
                                "record", f"{record.date} {record.machine_id} {record.code}"))
    for item in cleaned.feedback:
        examples.extend(_feedback_example(item, table, models, earlier, scrub, cleaned,
                                          lambda query, entry: passages(query, entry, kb, top_k), layout,
                                          answer_mode, target))
    examples.sort(key=lambda e: (e.date, e.code, e.origin))
    return examples, cleaned


def _feedback_example(item: FeedbackItem, table: CodeTable, models: dict[str, str],
                      earlier: Callable[[str, date], list[RepairRecord]], scrub: NameScrubber | None,
                      cleaned: Cleaned, find: Callable[[str, CodeEntry], list[Passage | prompt.PromptPassage]],
                      layout: prompt.ContextLayout, answer_mode: str = "free",
                      target: Callable[[prompt.PromptContext, dict[str, Any]], dict[str, Any]] = lambda _c, a: a,
                      ) -> list[Example]:
    entry = table.pick(item.code, models.get(item.machine_id, ""), item.lang) if item.code else None
    if entry is None or item.answer is None:
        cleaned.dropped["feedback without a known code (symptom queries need their passages)"] += 1
        return []
    when = parse_date(item.created)
    assert when is not None
    shown = scrub.feedback(item) if scrub else item
    ctx = context(entry, shown.query, item.machine_id, models.get(item.machine_id, ""),
                  earlier(entry.key, when), find(shown.query, entry), layout, answer_mode)
    return [Example(prompt.messages(ctx, target(ctx, feedback_answer(item.answer, ctx.passages))), when, entry.code,
                    "feedback",
                    f"feedback {item.feedback_id} (audit {item.audit_id})")]


def split_by_months(examples: list[Example], holdout_months: int) -> tuple[list[Example], list[Example], str]:
    """Hold out the latest `holdout_months` calendar months; returns (train, eval, first held-out month)."""
    if holdout_months <= 0 or not examples:
        return examples, [], ""
    latest = max(e.date for e in examples)
    index = latest.year * 12 + latest.month - 1 - (holdout_months - 1)
    start = date(index // 12, index % 12 + 1, 1)
    train = [e for e in examples if e.date < start]
    held = [e for e in examples if e.date >= start]
    return train, held, start.isoformat()


def llama_tokenizer(gguf: Path) -> Tokenizer:
    """Token counts with the base GGUF's own tokenizer (llama.cpp, vocabulary only)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def build_dataset(sources: Sources, out: Path, *, holdout_months: int = 1, scrub_names: bool = False,
                  tokenizer: Tokenizer | None = None, kb: KnowledgeBase | None = None, top_k: int = TOP_K,
                  layout: prompt.ContextLayout = LAYOUT, answer_mode: str = "free",
                  languages: Sequence[str] = ("zh-TW", "en")) -> Summary:
    """Write `train.jsonl`, `eval.jsonl` and `summary.json` into `out`; return the summary.

    Give `kb` (the active KB version) so each example shows the passages the engine would retrieve.
    """
    examples, cleaned = build_examples(sources, scrub_names=scrub_names, kb=kb, top_k=top_k, layout=layout,
                                       answer_mode=answer_mode, languages=languages)
    train, held, start = split_by_months(examples, holdout_months)
    summary = Summary(
        rows_read=len(sources.records) + len(sources.feedback), kept=len(examples), train=len(train),
        eval=len(held), dropped=dict(cleaned.dropped.most_common()), eval_from=start,
        codes=dict(Counter(e.code for e in examples).most_common()), warnings=list(sources.warnings),
        system_prompt_sha256=hashlib.sha256(prompt.system_prompt(answer_mode).encode("utf-8")).hexdigest(),
        answer_mode=answer_mode,
        passages=(f"retrieved from KB version {kb.version} (top {top_k}, {layout.passages} shown)" if kb is not None
                  else "no KB given: the code-table row as passage [1]"),
    )
    if tokenizer is not None and examples:
        counts = sorted(tokenizer(prompt.chatml(e.messages, add_generation_prompt=False)) for e in examples)
        summary.tokens = {"total": sum(counts), "mean": round(sum(counts) / len(counts)), "max": counts[-1],
                          "p95": counts[min(len(counts) - 1, int(0.95 * len(counts)))]}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("eval", held)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for example in rows:
                handle.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps(summary.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
    return summary


def format_summary(summary: Summary) -> str:
    """The printed summary: rows kept and dropped and why, split, codes, tokens."""
    lines = [f"rows read: {summary.rows_read}; examples kept: {summary.kept} "
             f"(train {summary.train}, eval {summary.eval}"
             + (f" from {summary.eval_from}" if summary.eval_from else "") + ")"]
    if summary.dropped:
        lines.append("dropped:")
        lines.extend(f"  {count:5d}  {reason}" for reason, count in summary.dropped.items())
    lines.append(f"codes covered: {len(summary.codes)}"
                 + (" (" + ", ".join(f"{c} {n}" for c, n in list(summary.codes.items())[:12])
                    + (", ..." if len(summary.codes) > 12 else "") + ")" if summary.codes else ""))
    if summary.passages:
        lines.append(f"passages: {summary.passages}")
    lines.append(f"answer mode: {summary.answer_mode}")
    if summary.tokens:
        t = summary.tokens
        lines.append(f"tokens: {t['total']} in all; per example mean {t['mean']}, p95 {t['p95']}, max {t['max']}")
    lines.extend(f"warning: {w}" for w in summary.warnings[:20])
    return "\n".join(lines)


def read_jsonl(path: Path) -> list[list[dict[str, str]]]:
    """The message lists of a dataset file."""
    chats = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            chats.append(json.loads(line)["messages"])
    return chats
