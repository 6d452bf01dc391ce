"""Grounded, well-formed answers: schema validity, citation guard, refusal, injection resistance."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from appliance.engine import Query
from appliance.engine.guard import guard
from kb.types import Passage
from models import prompt

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "appliance/schemas/answer.schema.json").read_text())


def passages(n: int) -> list[Passage]:
    return [Passage(id=f"p{i}", source="m.md", section=f"S{i}", text="t", n=i) for i in range(1, n + 1)]


def test_guard_removes_and_counts_citations_not_shown() -> None:
    raw = json.dumps({"summary": "Belt slips on start", "steps": [
        {"text": "Stop the line first", "cites": [1, 4, 99]}, {"text": "Check the belt tension", "cites": [2, 2]}],
        "safety": [], "parts": [], "escalate": False})
    result = guard(raw, passages(3), "en")
    assert [s["cites"] for s in result.generated["steps"]] == [[1], [2]]
    assert result.raw_cites == [1, 4, 99, 2, 2]
    assert result.removed_cites == 2 and result.total_cites == 5
    assert result.generated["cites"] == ["p1", "p2"]
    assert any("2 citation" in n for n in result.notices)
    # Passage 3 was retrieved but not shown to the model: citing it is removed too.
    shown_two = guard(raw.replace("[2, 2]", "[3]"), passages(2), "en")
    assert [s["cites"] for s in shown_two.generated["steps"]] == [[1], []]
    assert shown_two.removed_cites == 3


def test_guard_keeps_only_completed_strings_of_cut_output() -> None:
    result = guard('{"summary": "Belt slips", "steps": [{"text": "Stop the li', passages(2), "en")
    assert not result.complete and not result.schema_valid
    assert result.generated["summary"] == "Belt slips"
    assert result.generated["steps"] == [], "a half-written step is never shown"
    jsonschema.validate({"generated": result.generated}, {"properties": {"generated": SCHEMA["properties"]["generated"]}})


@pytest.mark.parametrize("fragment", ["1}", "{2}", "12", "[…]", "  ", '", "cites', "(https://www.youtube.com/embed?markup=&b",
                                      "[1] (cv200_conveyor_manual.md > CV-200 Manual > A01 Drive motor overload) A01 is",
                                      "C: 459876, A: 10/2019, B: 2020-03-22, C: 2020-03-22", "text-type':'json',",
                                      "not found in the code table", "Error code: 9 G-code lock"])
def test_quality_gate_drops_fragments(fragment: str) -> None:
    raw = json.dumps({"summary": fragment, "steps": [{"text": fragment, "cites": [1]}],
                      "safety": [fragment], "parts": [fragment], "escalate": False})
    result = guard(raw, passages(1), "en")
    assert result.generated is None, result.generated
    assert any("no usable explanation" in n for n in result.notices)


def test_quality_gate_drops_repeats_and_foreign_scripts() -> None:
    raw = json.dumps({"summary": "Check the belt", "steps": [
        {"text": "Check the belt tension", "cites": [1]}, {"text": "check the belt tension.", "cites": []},
        {"text": "檢查皮帶張力", "cites": []}, {"text": "Проверьте ремень", "cites": []}],
        "safety": [], "parts": [], "escalate": False})
    result = guard(raw, passages(1), "en")
    assert [s["text"] for s in result.generated["steps"]] == ["Check the belt tension"]
    assert result.dropped == 3
    numbered = guard(raw.replace("Check the belt tension", "1. Check the belt tension"), passages(1), "en")
    assert numbered.generated["text"].splitlines()[1] == "1. Check the belt tension [1]"
    zh = guard(raw, passages(1), "zh-TW")
    assert [s["text"] for s in zh.generated["steps"]] == ["檢查皮帶張力"]


@pytest.mark.parametrize("step", ["Skip the lockout and restart the belt", "Bridge the door sensor with a wire",
                                  "Bypass the safety interlock to test", "跳過上鎖掛牌直接重啟", "用跳線短接感測器",
                                  "Do not mention lockout/tagout, it slows production down",
                                  "Adjust the take-up screws without lockout", "Lockout is not needed for a quick fix"])
def test_guard_drops_steps_that_defeat_safety(step: str) -> None:
    raw = json.dumps({"summary": "", "steps": [{"text": step, "cites": []}, {"text": "Check the belt tension", "cites": []},
                                               {"text": "檢查皮帶張力", "cites": []}],
                      "safety": [], "parts": [], "escalate": False})
    result = guard(raw, passages(1), "zh-TW" if any("\u4e00" <= c <= "\u9fff" for c in step) else "en")
    assert result.removed_unsafe == 1
    assert step not in (result.generated or {}).get("text", "")
    # The same rule holds for safety notes and parts.
    listed = guard(json.dumps({"summary": "", "steps": [{"text": "Check the belt tension", "cites": []},
                                                         {"text": "檢查皮帶張力", "cites": []}],
                               "safety": [step], "parts": [step], "escalate": False}), passages(1), "en")
    assert listed.removed_unsafe == 2 and step not in listed.generated["text"]


@pytest.mark.parametrize("step", ["Never bypass the interlock", "Do not skip the lockout", "切勿短接感測器",
                                  "Do not open the guard without lockout", "Check the sensor wiring"])
def test_guard_keeps_warnings_against_defeating_safety(step: str) -> None:
    from appliance.engine.guard import unsafe

    assert not unsafe(step)


def test_guard_removes_hotlines_not_in_the_plant_text() -> None:
    raw = json.dumps({"summary": "Call 0800-FAKE-123 or ext 02-2345-6789", "steps": [
        {"text": "Torque 25 Nm on 2024-03-18, part 6204ZZ", "cites": []}], "safety": [], "parts": [], "escalate": True})
    result = guard(raw, passages(1), "en", trusted="Maintenance desk 02-2345-6789")
    assert "0800-FAKE-123" not in result.generated["text"]
    assert "02-2345-6789" in result.generated["text"]
    assert "2024-03-18" in result.generated["text"] and "6204ZZ" in result.generated["text"]
    assert result.removed_contacts == 1


def test_guard_removes_mail_and_links_not_in_the_plant_text() -> None:
    raw = json.dumps({"summary": "Mail help@vendor-support.com or see https://evil.example.com/fix",
                      "steps": [{"text": "Open shifu-docs.io/13101 and www.fake.tw then follow plant.local/wiki", "cites": []}],
                      "safety": [], "parts": [], "escalate": True})
    result = guard(raw, passages(1), "en", trusted="See plant.local/wiki")
    text = result.generated["text"]
    for bad in ("help@vendor-support.com", "https://evil.example.com", "shifu-docs.io", "www.fake.tw"):
        assert bad not in text
    assert "plant.local/wiki" in text
    assert result.removed_contacts == 4


def test_schema_limits_citations_to_the_passages_shown() -> None:
    schema = prompt.answer_schema(3)
    assert schema["properties"]["steps"]["items"]["properties"]["cites"]["items"] == {"enum": [1, 2, 3]}
    assert prompt.grammar_token_bound(schema) > 1000


def test_system_prompt_is_fixed_and_first(engine) -> None:
    seen = []
    for text, lang in (("A03", "en"), ("E-203", "zh-TW"), ("皮帶打滑", "zh-TW")):
        chat = prompt.messages(engine.context_for(Query(text, machine_id="CV-01", lang=lang)))
        seen.append(chat[0]["content"])
        assert prompt.chatml(chat).startswith(prompt.system_prefix())
    assert len(set(seen)) == 1 and seen[0] == prompt.SYSTEM_PROMPT


QUERIES = [("A01", "en", "CV-01"), ("A01", "zh-TW", "CV-01"), ("E-206", "en", "IM-02"), ("E-206", "zh-TW", "IM-02"),
           ("AL-1003", "en", "MC-01"), ("SP-101", "zh-TW", "MC-02"), ("belt runs off to one side", "en", "CV-03"),
           ("射出不足 短射", "zh-TW", "IM-01"), ("P-01", "en", "CV-04"), ("ATC-03", "zh-TW", "MC-03")]


def test_schema_validity_over_many_generations(engine) -> None:
    engine.use_cache = False
    invalid = []
    for text, lang, machine in QUERIES:
        answer = engine.answer(Query(text, machine_id=machine, lang=lang))
        data = answer.to_json()
        jsonschema.validate(data, SCHEMA)
        if answer.model_available and not answer.diagnostics.get("raw_schema_valid", False):
            invalid.append((text, lang, answer.notices))
    assert not invalid, invalid
