"""A symptom gets a deterministic answer before the model: likely codes and similar past repairs.

On the real sample KB: the plant's code table and its 360 repair records. The labelled set
tests/data/symptom_queries.jsonl holds operators' own wording in en and zh-TW (not the
table's titles); `shifu kb eval` must reach likely-code recall@3 >= 0.9 in each language.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from appliance.engine.types import CodeFound, Done, LikelyCodes, Query
from appliance.server.events import decode, encode, parse_sse
from tests.conftest import DATA, SAMPLE_KB

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "appliance/schemas/answer.schema.json").read_text())
QUERIES = DATA / "symptom_queries.jsonl"


@pytest.fixture
def engine(kb_home: Path, settings, embedder):  # type: ignore[no-untyped-def]
    """The engine over the sample KB without a model: what the operator sees before any model runs."""
    from appliance import paths
    from appliance.engine import Engine
    from kb.versions import VersionStore

    eng = Engine(settings, VersionStore(paths.kb_dir()), embedder=embedder)
    yield eng
    eng.close()


def _records() -> list[dict[str, str]]:
    with open(SAMPLE_KB / "records" / "repair_records.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _code_text() -> str:
    parts = []
    for path in sorted((SAMPLE_KB / "codes").glob("*.csv")):
        with open(path, encoding="utf-8") as handle:
            parts.extend(" ".join(row.values()) for row in csv.DictReader(handle))
    return "\n".join(parts).lower()


@pytest.mark.parametrize(("text", "lang"), [("belt squeals when starting", "en"), ("皮帶異音", "zh-TW")])
def test_the_symptoms_of_the_issue_get_a_likely_code_with_its_procedure(engine, text: str, lang: str) -> None:
    events = list(engine.stream(Query(text, machine_model="CV-200", lang=lang), use_model=False))
    likely = next(e for e in events if isinstance(e, LikelyCodes))
    answer = events[-1].answer
    assert events.index(likely) < next(i for i, e in enumerate(events) if isinstance(e, Done))
    codes = [item.entry.code for item in answer.likely_codes]
    assert "A03" in codes[:3], codes
    row = next(item for item in answer.likely_codes if item.entry.code == "A03")
    table = engine.kb().lookup("A03", machine_model="CV-200", lang=lang).entry
    assert row.entry == table, "the likely code carries the plant's own steps and safety notes"
    scores = [item.score for item in answer.likely_codes]
    assert all(0 < s <= 1 for s in scores)
    assert answer.code is None and answer.normalized is None
    assert answer.similar_repairs and any(r.record.code in ("A03", "A11") for r in answer.similar_repairs)
    data = answer.to_json()
    jsonschema.validate(data, SCHEMA)
    assert data["likely_codes"][0]["steps"] and "score" in data["likely_codes"][0]


def test_a_symptom_only_repair_records_describe_still_finds_its_code(engine) -> None:
    # "Squeal" is nowhere in the code table: only a technician's note under A03 says it.
    assert "squeal" not in _code_text()
    assert any("squeal" in r["symptom"].lower() and r["code"] == "A03" for r in _records())
    answer = engine.answer(Query("squealing noise", lang="en"), use_model=False)
    assert answer.likely_codes and answer.likely_codes[0].entry.code == "A03"
    assert answer.similar_repairs[0].record.code == "A03"


@pytest.mark.parametrize(("model", "first"), [("CV-200", "A01"), ("VMC-640", "AL-1001")])
def test_this_machine_models_codes_come_first(engine, model: str, first: str) -> None:
    answer = engine.answer(Query("motor overload trips", machine_model=model, lang="en"), use_model=False)
    codes = [item.entry.code for item in answer.likely_codes]
    assert codes and codes[0] == first, codes
    assert all(r.record.machine_model == model for r in answer.similar_repairs[:1])


def test_similar_repairs_say_how_often_their_fix_worked(engine) -> None:
    answer = engine.answer(Query("料溫顯示比實際低很多", lang="zh-TW"), use_model=False)
    assert answer.similar_repairs
    best = answer.similar_repairs[0]
    assert best.record.code == "E-202" and best.record.symptom == "料溫顯示比實際低很多"
    tries = Counter((r["code"], r["action"]) for r in _records())
    fixed = Counter((r["code"], r["action"]) for r in _records() if r["result"] == "fixed")
    for item in answer.similar_repairs:
        key = (item.record.code, item.record.action)
        assert (item.fixed, item.total) == (fixed[key], tries[key]), key
    scores = [item.score for item in answer.similar_repairs]
    assert scores == sorted(scores, reverse=True)
    shown = answer.to_json()["similar_repairs"][0]
    assert shown["code"] == "E-202" and shown["fix_success"] == {"fixed": best.fixed, "total": best.total}


def test_a_code_gets_no_likely_codes(engine) -> None:
    answer = engine.answer(Query("A03", machine_id="CV-01", lang="en"), use_model=False)
    assert answer.code is not None and answer.likely_codes == [] and answer.similar_repairs == []


def test_likely_codes_travel_over_sse_unchanged(engine) -> None:
    events = list(engine.stream(Query("皮帶異音", machine_model="CV-200", lang="zh-TW"), use_model=False))
    wire = "".join(encode(e) for e in events)
    back = [decode(name, data) for name, data in parse_sse(iter(wire.splitlines()))]
    mine = next(e for e in events if isinstance(e, LikelyCodes))
    theirs = next(e for e in back if isinstance(e, LikelyCodes))
    assert [c.entry.code for c in theirs.codes] == [c.entry.code for c in mine.codes]
    assert [c.entry.steps for c in theirs.codes] == [c.entry.steps for c in mine.codes]
    assert [(r.record.code, r.fixed, r.total) for r in theirs.repairs] == [
        (r.record.code, r.fixed, r.total) for r in mine.repairs]
    done = back[-1]
    assert isinstance(done, Done) and [c.entry.code for c in done.answer.likely_codes] == [
        c.entry.code for c in mine.codes]


def test_an_ambiguous_code_says_so_over_sse(engine) -> None:
    events = list(engine.stream(Query("E-001", lang="en"), use_model=False))
    wire = "".join(encode(e) for e in events)
    found = next(decode(n, d) for n, d in parse_sse(iter(wire.splitlines())) if n == "code_found")
    assert isinstance(found, CodeFound) and found.ambiguous and len(found.candidates) == 2


def _cli(*args: str) -> Any:
    from appliance.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_kb_eval_reports_likely_code_recall_per_language(kb_home: Path) -> None:
    result = _cli("kb", "eval", str(QUERIES), "--json", "--mode", "fts")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    langs = {json.loads(line)["lang"] for line in QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert langs == {"en", "zh-TW"}
    recall = report["likely_code_recall_at_3"]
    assert set(recall) == langs
    assert all(recall[lang] >= 0.9 for lang in langs), (recall, report["likely_codes"]["misses"])
    assert report["likely_codes"]["by_lang"]["en"]["n"] >= 30 and report["likely_codes"]["by_lang"]["zh-TW"]["n"] >= 30


def test_ask_takes_a_machine_model_or_a_machine_but_not_both(kb_home: Path) -> None:
    both = _cli("ask", "E-001", "--machine", "IM-01", "--model", "IM-850", "--no-llm")
    assert both.exit_code == 2 and "not both" in both.output
    by_model = _cli("ask", "E-001", "--model", "IM-850", "--no-llm", "--json", "--lang", "en")
    assert by_model.exit_code == 0, by_model.output
    data = json.loads(by_model.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["machine_model"] == "IM-850" and data["code"]["machine_model"] == "IM-850"
    unknown = json.loads(_cli("ask", "E-001", "--no-llm", "--json", "--lang", "en").stdout)
    jsonschema.validate(unknown, SCHEMA)
    assert unknown["code"] is None and unknown["machine_model"] is None
    assert sorted(c["machine_model"] for c in unknown["candidates"]) == ["CV-200", "IM-850"]
    text = _cli("ask", "E-001", "--no-llm", "--lang", "en").output
    assert "CV-200" in text and "IM-850" in text and "choose the machine" in text


def test_ask_prints_the_likely_code_as_likely(kb_home: Path) -> None:
    result = _cli("ask", "皮帶異音", "--model", "CV-200", "--no-llm", "--lang", "zh-TW")
    assert result.exit_code == 0, result.output
    assert "可能是 A" in result.output and "相似的過去維修" in result.output


@pytest.mark.parametrize("mode", ["free", "quote"])
def test_the_model_explains_a_symptom_from_its_likely_code_and_similar_repairs(engine: Any, mode: str) -> None:
    """The model is shown what the operator sees first: the likely code's row, marked as a guess,
    and the past repairs with the same symptom."""
    from appliance.engine import Engine
    from appliance.engine.types import Query
    from tests.scripted import ScriptedModel

    scripted = ScriptedModel({"summary": "", "steps": [], "safety": [], "parts": [], "escalate": False})
    engine.settings.model.answer_mode = mode
    engine = Engine(engine.settings, engine.versions, backend_factory=lambda: scripted, embedder=engine.embedder)
    engine.use_cache = False
    answer = engine.answer(Query("belt squeals when starting", lang="en"))
    assert answer.code is None and answer.likely_codes, answer.notices
    assert scripted.prompts, answer.notices
    best = answer.likely_codes[0].entry
    told = scripted.prompts[-1][-1]["content"]
    assert f"Likely error code (guessed from the symptom, not confirmed): {best.code} {best.title}" in told
    assert all(step in told for step in best.steps)
    assert answer.similar_repairs[0].record.action in told
    engine.answer(Query(best.code, machine_model=best.machine_model, lang="en"))
    assert f"\nError code: {best.code} {best.title}" in scripted.prompts[-1][-1]["content"]
