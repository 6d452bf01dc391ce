"""The engine end to end on the real sample KB and the real embedded model."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from appliance.engine import CodeFound, Done, HistoryFound, Partial, PassagesFound, Query, Token
from appliance.engine.quality import usable
from kb.source.codes import split_items
from tests.conftest import SAMPLE_KB


def table_row(code: str, model: str, lang: str) -> dict[str, str]:
    for path in sorted((SAMPLE_KB / "codes").glob("*.csv")):
        with open(path, encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["code"] == code and row["machine_model"] == model and row["lang"] == lang:
                    return row
    raise AssertionError(f"{code}/{model}/{lang} not in the sample code tables")


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_known_code_gives_exact_steps_and_a_generated_part(engine, lang: str) -> None:
    engine.settings.model.answer_mode = "free"  # the writing mode's language fallback (quoting: test_quote.py)
    answer = engine.answer(Query("E-203", machine_id="IM-01", lang=lang))
    row = table_row("E-203", "IM-850", lang)
    assert answer.code is not None
    assert answer.code.title == row["title"]
    assert list(answer.code.steps) == list(split_items(row["steps"]))
    assert answer.code.lang == lang
    assert answer.model_available is True
    # The embedded model writes English only (models.toml languages): zh-TW falls back, labelled.
    assert answer.model is not None and answer.model["languages"] == ["en"]
    if lang == "zh-TW":
        assert any("英文" in n for n in answer.notices)
    generated = answer.generated
    if generated is None:  # everything the model wrote failed the quality gate: said, not shown
        assert any("沒有產生可用" in n or "no usable" in n for n in answer.notices)
        return
    assert generated["lang"] == "en"
    assert all(usable(step["text"], "en") for step in generated["steps"])
    # The guard's removal count is the model's raw citations outside the passages it was shown.
    shown = {p.n for p in answer.passages[: engine.settings.retrieval.prompt_passages]}
    raw = answer.diagnostics["raw_cites"]
    assert answer.diagnostics["cites_removed"] == sum(1 for n in raw if n not in shown)


def test_events_come_in_order_and_procedure_before_model(engine) -> None:
    from tests.scripted import ScriptedModel

    engine.set_backend(ScriptedModel({"summary": "The belt slips.", "steps": [
        {"text": "Stop the conveyor first.", "cites": [1]}, {"text": "Check the belt tension.", "cites": [2]}],
        "safety": [], "parts": [], "escalate": False}))
    engine.use_cache = False
    kinds = []
    partials = []
    for event in engine.stream(Query("A03", machine_id="CV-01", lang="en")):
        kinds.append(type(event))
        if isinstance(event, Partial):
            partials.append(event.generated)
    assert kinds[:3] == [CodeFound, HistoryFound, PassagesFound]
    assert Token not in kinds, "raw tokens are never streamed unless asked for (debug)"
    assert Partial in kinds and kinds.index(Partial) > kinds.index(PassagesFound)
    assert kinds[-1] is Done
    # Each partial holds completed strings only, and grows step by step.
    assert [len(p["steps"]) for p in partials] == sorted(len(p["steps"]) for p in partials)
    for p in partials:
        for step in p["steps"]:
            assert step["text"] in {"Stop the conveyor first.", "Check the belt tension."}
        assert p["summary"] in {"", "The belt slips."}


@pytest.mark.parametrize("typed", ["Ｅ－２０３", "e-203", "e 203", "E203", " e203 "])
def test_normalisation_variants_find_the_code(engine, typed: str) -> None:
    answer = engine.answer(Query(typed, machine_id="IM-01", lang="en"), use_model=False)
    assert answer.normalized == "E203"
    assert answer.code is not None and answer.code.code == "E-203"


def test_machine_model_picks_the_row(engine) -> None:
    conveyor = engine.answer(Query("E-001", machine_id="CV-01", lang="en"), use_model=False)
    moulder = engine.answer(Query("E-001", machine_id="IM-01", lang="en"), use_model=False)
    assert conveyor.code.machine_model == "CV-200"
    assert moulder.code.machine_model == "IM-850"
    assert conveyor.code.steps != moulder.code.steps
    assert any(c.machine_model == "IM-850" for c in conveyor.candidates)


def test_history_for_a_known_code(engine) -> None:
    answer = engine.answer(Query("A03", machine_id="CV-01", lang="zh-TW"), use_model=False)
    assert answer.history, "the sample records hold repairs for A03"
    assert answer.history_summary and answer.history_summary[0].count >= 2
    counts = [fix.count for fix in answer.history_summary]
    assert counts == sorted(counts, reverse=True)


def test_unknown_code_says_so_and_suggests(engine) -> None:
    answer = engine.answer(Query("E-2O3", lang="en"))  # letter O instead of zero
    assert answer.code is None
    assert answer.normalized == "E2O3"
    assert "E-203" in answer.suggestions
    assert any("not in the code table" in n for n in answer.notices)
    data = answer.to_json()
    assert data["code"] is None


def test_unknown_code_with_nothing_relevant_is_refused(engine) -> None:
    answer = engine.answer(Query("ZQ-9999", lang="en"))
    assert answer.code is None
    assert answer.refused is True and answer.generated is None
    assert answer.to_json()["refused"] is True
    assert any("not in the knowledge base" in n for n in answer.notices)


def test_symptom_query_gets_passages(engine) -> None:
    answer = engine.answer(Query("皮帶打滑", lang="zh-TW"), use_model=False)
    assert answer.normalized is None
    assert answer.passages


def test_audit_row_written(engine, kb_home: Path) -> None:
    answer = engine.answer(Query("A03", machine_id="CV-01", lang="en"))
    conn = sqlite3.connect(kb_home / "ops.sqlite")
    row = conn.execute(
        "SELECT query, normalized, passage_ids, model_id, model_sha256, kb_version, answer, timings FROM audit WHERE id = ?",
        [answer.audit_id],
    ).fetchone()
    assert row is not None
    query, normalized, passage_ids, model_id, sha, kb_version, generated, timings = row
    assert (query, normalized, kb_version) == ("A03", "A03", 1)
    assert model_id == "smollm2-135m-instruct-q4_1"
    assert len(sha) == 64
    assert all(p.id in passage_ids for p in answer.passages)
    assert "steps" in generated and "total" in timings


def test_cache_is_per_prompt_machine_and_history(engine) -> None:
    from tests.scripted import ScriptedModel

    model = ScriptedModel({"summary": "Check the belt tension.", "steps": [
        {"text": "Check the belt tension.", "cites": [1]}], "safety": [], "parts": [], "escalate": False})
    engine.set_backend(model)
    one = engine.context_for(Query("A04", machine_id="CV-01", lang="en"))
    two = engine.context_for(Query("A04", machine_id="CV-02", lang="en"))
    assert one.machine != two.machine and one.history != two.history, "the two machines' prompts differ"
    first = engine.answer(Query("A04", machine_id="CV-01", lang="en"))
    other_machine = engine.answer(Query("A04", machine_id="CV-02", lang="en"))
    again = engine.answer(Query("a 04", machine_id="CV-01", lang="en"))
    assert not first.cached and not other_machine.cached, "another machine with another history is not served"
    assert again.cached and again.generated == first.generated
    assert len(model.prompts) == 2
    # A code inside a sentence: the operator's own words are in the prompt, so in the key.
    worded = engine.answer(Query("A04 belt squeals", machine_id="CV-01", lang="en"))
    assert not worded.cached
    # The cached answer cites passage numbers: both spellings retrieved the same passages.
    assert [p.id for p in again.passages] == [p.id for p in first.passages]


def test_query_vectors_are_remembered_exactly(embedder) -> None:
    import numpy as np

    calls = []
    original = embedder.embed

    def counting(texts, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(list(texts))
        return original(texts, **kwargs)

    embedder.embed = counting
    try:
        text = "belt slips when the line starts 輸送帶打滑"
        first = embedder.embed_query(text)
        again = embedder.embed_query(text)
        assert calls == [[text]]
        assert again is first and not first.flags.writeable
        assert np.allclose(first, original([text])[0], atol=1e-6)
    finally:
        del embedder.embed


def test_input_errors(engine) -> None:
    from kb.errors import InputError

    for bad in ["", "   ", "x" * 5000, "A0\x071", "E-203\x1b[2J"]:
        with pytest.raises(InputError):
            engine.answer(Query(bad))


class RecordingBackend:
    """The real backend, with a log of each generation: who asked, tokens given, how it ended."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.calls: list[dict[str, object]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.real, name)

    def stream(self, messages, options):  # type: ignore[no-untyped-def]
        call: dict[str, object] = {"background": options.interrupt is not None, "tokens": 0}
        self.calls.append(call)
        for piece in self.real.stream(messages, options):
            call["tokens"] = int(call["tokens"]) + 1  # type: ignore[call-overload]
            yield piece
        call["finish"] = self.real.last_stats().finish_reason


def test_background_answer_gives_the_model_up_during_its_prompt(kb_home, settings, llm_backend, embedder) -> None:
    """An operator arriving while an alarm's prompt is evaluated waits for one chunk, not the whole prompt."""
    import threading
    import time

    from appliance import paths
    from appliance.engine import Engine
    from kb.versions import VersionStore

    recorder = RecordingBackend(llm_backend)
    engine = Engine(settings, VersionStore(paths.kb_dir()), backend_factory=lambda: recorder, embedder=embedder)
    engine.use_cache = False
    engine.warm()
    done: dict[str, object] = {}
    alarm = threading.Thread(target=lambda: done.setdefault(
        "alarm", engine.answer(Query("E-207", machine_id="IM-02", lang="zh-TW", source="serial", priority=1))))
    alarm.start()
    deadline = time.monotonic() + 60
    while not recorder.calls:  # the alarm's generation has begun: its prompt is being evaluated
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)
    operator = engine.answer(Query("A02", machine_id="CV-01", lang="en"))
    alarm.join(timeout=600)
    background = [c for c in recorder.calls if c["background"]]
    foreground = [c for c in recorder.calls if not c["background"]]
    # The alarm's first attempt stopped inside its prompt (no token), the operator went next,
    # and the alarm was then answered in full.
    assert background[0] == {"background": True, "tokens": 0, "finish": "interrupted"}, recorder.calls
    assert recorder.calls.index(foreground[0]) == 1
    assert int(foreground[0]["tokens"]) > 0 and operator.model_available  # type: ignore[call-overload]
    assert background[-1]["finish"] in {"stop", "length"} and int(background[-1]["tokens"]) > 0  # type: ignore[call-overload]
    assert done["alarm"].model_available and done["alarm"].diagnostics["preempted"] >= 1  # type: ignore[attr-defined]


@pytest.fixture
def no_model_engine(kb_home: Path, settings, embedder):  # type: ignore[no-untyped-def]
    """The engine over the sample KB without a model: the deterministic steps only."""
    from appliance import paths
    from appliance.engine import Engine
    from kb.versions import VersionStore

    eng = Engine(settings, VersionStore(paths.kb_dir()), embedder=embedder)
    yield eng
    eng.close()


@pytest.mark.parametrize("lang", ["en", "zh-TW"])
def test_a_code_of_several_models_without_a_machine_is_ambiguous(no_model_engine, lang: str) -> None:
    events = list(no_model_engine.stream(Query("E-001", lang=lang)))
    found = next(e for e in events if isinstance(e, CodeFound))
    answer = events[-1].answer
    assert found.ambiguous and found.entry is None and answer.code is None
    assert sorted(c.machine_model for c in answer.candidates) == ["CV-200", "IM-850"]
    assert all(c.lang == lang for c in answer.candidates), "each model's row in the operator's language"
    assert any("CV-200" in n and "IM-850" in n for n in answer.notices)
    assert answer.history == [] and answer.history_summary == [], "no model's repairs stand for the other's"
    data = answer.to_json()
    assert data["code"] is None and len(data["candidates"]) == 2 and data["machine_model"] is None


def test_an_ambiguous_code_waits_for_the_machine_before_the_model(no_model_engine) -> None:
    class Exploding:
        def __call__(self) -> None:
            raise AssertionError("the model must not be asked before the operator picks the machine")

    no_model_engine._backend_factory = Exploding()
    answer = no_model_engine.answer(Query("E-001", lang="en"), use_model=True)
    assert answer.generated is None and not answer.model_available
    assert not any("could not answer" in n for n in answer.notices), "the model was not even tried"


def test_the_model_picks_the_row_from_the_query_or_the_inventory(no_model_engine) -> None:
    by_model = no_model_engine.answer(Query("E-001", machine_model="IM-850", lang="en"), use_model=False)
    assert by_model.code.machine_model == "IM-850" and by_model.to_json()["machine_model"] == "IM-850"
    # The inventory knows better than a typed model: IM-01 is an IM-850.
    by_machine = no_model_engine.answer(Query("E-001", machine_id="IM-01", lang="en"), use_model=False)
    assert by_machine.code.machine_model == "IM-850" and by_machine.to_json()["machine_model"] == "IM-850"
    # A machine whose model has no row of its own, with no generic row: still ambiguous.
    mill = no_model_engine.answer(Query("E-001", machine_id="MC-01", lang="en"), use_model=False)
    assert mill.code is None and len(mill.candidates) == 2


@pytest.mark.parametrize(("machine_id", "model"), [("CV-01", "CV-200"), ("IM-01", "IM-850"), ("", "IM-850")])
def test_history_of_a_model_specific_code_holds_only_that_model(no_model_engine, machine_id: str,
                                                                 model: str) -> None:
    with open(SAMPLE_KB / "records" / "repair_records.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["code"] == "E-001"]
    assert {r["machine_model"] for r in rows} >= {"CV-200", "IM-850"}, "the sample mixes both models' E-001"
    answer = no_model_engine.answer(Query("E-001", machine_id=machine_id, machine_model="" if machine_id else model,
                                          lang="en"), use_model=False)
    own = {r["action"] for r in rows if r["machine_model"] == model}
    assert answer.history and {r.machine_id for r in answer.history} <= {
        r["machine_id"] for r in rows if r["machine_model"] == model}
    assert {fix.action for fix in answer.history_summary} <= own
    if machine_id in {r["machine_id"] for r in rows}:
        assert answer.history[0].machine_id == machine_id, "this machine's own repairs come first"


def test_history_of_a_generic_code_holds_every_model(no_model_engine) -> None:
    answer = no_model_engine.answer(Query("P-01", machine_id="CV-01", lang="en"), use_model=False)
    assert answer.code.machine_model == ""
    with open(SAMPLE_KB / "records" / "repair_records.csv", encoding="utf-8") as handle:
        models = {r["machine_model"] for r in csv.DictReader(handle) if r["code"] == "P-01"}
    assert len(models) > 1
    records, _ = no_model_engine.kb().history("P01", limit=100)
    assert {r.machine_model for r in records} == models
