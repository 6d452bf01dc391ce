"""Quote mode (issue 20): every step is a sentence the model was shown, verbatim, with its source.

The model is the real embedded SmolLM2 (its registry default is `quote`); the check does not trust
the guard: it reads the user message the model was actually given and requires each step to be
listed there, under its number, character for character.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from appliance.engine.guard import guard
from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo
from kb.types import Passage
from models import prompt, quote

REPO = Path(__file__).resolve().parent.parent
GRBL = REPO.parent / "shared" / "corpora" / "grbl"
MAPPING = REPO / "kb" / "mappings" / "grbl.toml"


class Recording(LLMBackend):
    """The real backend, with the chats it was given kept for the test to read."""

    name = "recording"

    def __init__(self, inner: LLMBackend) -> None:
        self.inner = inner
        self.chats: list[list[dict[str, str]]] = []
        self.options: list[GenerateOptions] = []

    def load(self) -> None:
        self.inner.load()

    def info(self) -> ModelInfo:
        return self.inner.info()

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.chats.append(messages)
        self.options.append(options)
        yield from self.inner.stream(messages, options)


def test_sentences_split_at_chinese_and_english_ends() -> None:
    text = ("Stop the belt, e.g. at the end of a shift. Check the idlers!\n"
            "1. Clean the tail pulley.\n| **`9`** | G-code locked out during alarm or jog state |\n"
            "按停止鍵並確認輸送帶上無人作業。關閉主電源後上鎖掛牌；再檢查皮帶")
    assert quote.split_sentences(text) == [
        "Stop the belt, e.g. at the end of a shift.", "Check the idlers!", "Clean the tail pulley.",
        "9: G-code locked out during alarm or jog state", "按停止鍵並確認輸送帶上無人作業。", "關閉主電源後上鎖掛牌；", "再檢查皮帶",
    ]
    quotes = quote.candidates(["Stop the belt and note the side"], [(2, "## A02\n3.\nSee 4.2. Then clean the tail pulley.")])
    assert [(q.n, q.text, q.passage) for q in quotes] == [
        (1, "Stop the belt and note the side", 0), (2, "Then clean the tail pulley.", 2)]  # no heading, number
    table = "| ID | Error Code Description |\n|:-:|---|\n| 9 | G-code locked out during alarm or jog state |"
    assert quote.split_sentences(table) == ["9: G-code locked out during alarm or jog state"]  # no header row
    row = "error:9 G-code lock\nG-code commands are locked out during alarm or jog state."
    assert [q.text for q in quote.candidates([], [(1, row)], headings=["error_codes.csv", "error:9 G-code lock"])] == [
        "G-code commands are locked out during alarm or jog state."]  # the row's title line is a heading
    rows = ("| 1 | G-code words consist of a letter and a value. Letter was not found. |\n"
            "| 9 | G-code locked out during alarm or jog state. |")
    assert [q.text for q in quote.candidates([], [(1, rows)], code="error:9")] == [
        "9: G-code locked out during alarm or jog state."]  # error:1's row is not a step for error:9
    assert [quote.another_codes_row(s, c) for s, c in [("A01: Drive motor overload", "A03"), ("E203: Barrel hot", "E-203"),
                                                       ("Note: check the belt", "A03"), ("12: too fast", "")]] == [
        True, False, False, False]
    fields = "name: Homing locate feed rate\nunits: mm/min\ndescription: Sets the feed rate of the homing locate phase."
    assert [q.text for q in quote.candidates([], [(1, fields)])] == [
        "description: Sets the feed rate of the homing locate phase."]  # field labels are not steps


def _passage(n: int, text: str) -> Passage:
    return Passage(id=f"c{n}", n=n, source="manual.md", section="Belt", page=None, text=text, score=1.0)


def test_guard_keeps_only_verbatim_shown_sentences() -> None:
    quotes = quote.candidates(["Stop the belt and note which side it runs towards"],
                              [(1, "Clean built-up material off the tail pulley. Call 0800-123-456 for help now.")])
    shown = [_passage(1, "")]
    raw = json.dumps({"steps": [
        {"s": 2, "text": "Clean built-up material off the tail pulley.", "cites": [1]},
        {"s": 1, "text": "Stop the belt and note which side it runs towards!", "cites": []},  # edited: not verbatim
        {"s": 9, "text": "Replace the motor.", "cites": [1]},  # never shown
        {"s": 3, "text": "Call 0800-123-456 for help now.", "cites": [1]},  # untrusted contact: dropped whole
    ], "summary": "The belt runs off-centre."}, ensure_ascii=False)
    result = guard(raw, shown, "zh-TW", "", quotes=quotes)
    assert result.generated is not None
    assert result.generated["steps"] == [{"text": "Clean built-up material off the tail pulley.", "cites": [1],
                                          "quote": 2, "source": "manual.md > Belt"}]
    assert result.not_quoted == 2 and result.removed_contacts == 1
    assert result.generated["summary"] == ""  # English summary for a zh-TW operator fails the gate


@pytest.mark.parametrize(("summary", "kept"), [
    ("The belt slips when the speed drops below 85 % for 3 seconds.", True),
    ("A03 is raised when the belt speed is below 85 % for 2, so", False),  # "2": never written
    ("Error Code Description", False),  # a copied table header, not a sentence
    ("Check the tension at 12.5 mm.", False),
])
def test_a_quoting_models_summary_states_only_numbers_it_was_shown(summary: str, kept: bool) -> None:
    quotes = quote.candidates(["Adjust the belt tension"],
                              [(1, "A03 is raised when the speed is below 85 % of the commanded speed for 3 seconds.")])
    raw = json.dumps({"steps": [{"s": 1, "text": "Adjust the belt tension", "cites": []}], "summary": summary})
    result = guard(raw, [_passage(1, "")], "en", "", quotes=quotes)
    assert result.generated is not None
    assert result.generated["summary"] == (summary if kept else "")


@pytest.fixture(scope="module")
def grbl_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not GRBL.is_dir():
        pytest.skip("the shared Grbl corpus is not beside the repo")
    home = tmp_path_factory.mktemp("grbl_quote")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIFU_HOME", str(home))
        from appliance.cli.main import cli

        result = CliRunner().invoke(cli, ["kb", "build", str(GRBL), "--mapping", str(MAPPING), "--json"])
        assert result.exit_code == 0, result.output
        yield home


def _engine(home: Path, backend: LLMBackend, embedder: Any) -> Any:
    from appliance.config import load_settings
    from appliance.engine import Engine
    from kb.versions import VersionStore

    engine = Engine(load_settings(), VersionStore(home / "kb"), backend_factory=lambda: backend, embedder=embedder)
    engine.use_cache = False
    return engine


def _alnum(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _check_quoted(engine: Any, backend: Recording, text: str, lang: str, machine: str = "") -> dict[str, Any]:
    from appliance.engine.types import Query

    before = len(backend.chats)
    answer = engine.answer(Query(text=text, lang=lang, machine_id=machine)).to_json()
    assert answer["model"]["answer_mode"] == "quote", answer["model"]
    generated = answer["generated"]
    assert generated is not None and generated["steps"], (text, answer["notices"])
    assert len(backend.chats) == before + 1
    shown = backend.chats[-1][1]["content"]
    assert backend.chats[-1][0]["content"] == prompt.QUOTE_SYSTEM_PROMPT
    sources = {p["n"]: f"{p['source']} > {p['section']}" for p in answer["passages"]}
    # No title is offered as a step: not a passage's source or section names, not the code and its title.
    headings = {_alnum(h) for p in answer["passages"] for h in [p["source"], *p["section"].split(" > ")]}
    if answer["code"]:
        headings |= {_alnum(answer["code"]["title"]), _alnum(f"{answer['code']['code']} {answer['code']['title']}")}
    listed = re.findall(r"^\((\d+)\) (.+)$", shown, flags=re.M)
    assert listed and not [s for _, s in listed if _alnum(s) in headings], listed
    for step in generated["steps"]:
        # listed in what the model read, under its own number, character for character
        assert f"({step['quote']}) {step['text']}\n" in shown + "\n", (step, shown)
        if step["cites"]:
            assert step["source"] == sources[step["cites"][0]]
        else:
            assert step["source"] == ("標準作業程序" if lang == "zh-TW" else "standard procedure")
    return answer


@pytest.mark.parametrize(("text", "lang", "machine"), [
    ("A01", "zh-TW", "CV-01"),
    ("What does A02 mean?", "en", "CV-02"),
    ("輸送帶皮帶跑偏", "zh-TW", "CV-03"),
    ("The conveyor belt screeches for a few seconds every time it starts", "en", "CV-02"),
])
def test_sample_kb_answers_quote_what_was_shown(kb_home: Path, llm_backend: Any, embedder: Any,
                                                 text: str, lang: str, machine: str) -> None:
    backend = Recording(llm_backend)
    engine = _engine(kb_home, backend, embedder)
    try:
        answer = _check_quoted(engine, backend, text, lang, machine)
    finally:
        engine.close(backend=False)
    assert answer["generated"]["lang"] == lang  # quoting, the English-only model answers a zh-TW operator


@pytest.mark.parametrize(("text", "lang"), [
    ("error:9", "en"),
    ("ALARM:1", "zh-TW"),
    ("the machine stopped after it hit a limit switch", "en"),
    ("hard limit switch triggered 機器停止", "zh-TW"),  # Grbl's manuals are English only
])
def test_grbl_answers_quote_what_was_shown(grbl_home: Path, monkeypatch: pytest.MonkeyPatch, llm_backend: Any,
                                           embedder: Any, text: str, lang: str) -> None:
    monkeypatch.setenv("SHIFU_HOME", str(grbl_home))
    backend = Recording(llm_backend)
    engine = _engine(grbl_home, backend, embedder)
    try:
        _check_quoted(engine, backend, text, lang)
    finally:
        engine.close(backend=False)


def test_eval_sees_usable_answers_and_where_quotes_come_from() -> None:
    from appliance.evaluation.metrics import score_item, summarize

    item = {"id": "s1", "kind": "symptom", "lang": "en", "expected_code": "A03",
            "expected_section": "Manual > A03 Belt slip detected", "reference_steps": ["Clean the pulley lagging"]}
    passages = [{"n": 1, "id": "a", "section": "Manual > A03 Belt slip detected", "source": "m.md"},
                {"n": 2, "id": "b", "section": "Manual > A02 Belt tracking", "source": "m.md"}]

    def answer(steps: list[dict[str, Any]]) -> dict[str, Any]:
        return {"passages": passages, "generated": {"steps": steps, "cites": [], "text": ""}}

    from_a03 = score_item(item, answer([{"text": "Clean the pulley lagging", "cites": [1], "quote": 3}]),
                          {"answer_mode": "quote"})
    mixed = score_item(item, answer([{"text": "Clean the pulley lagging", "cites": [1], "quote": 3},
                                     {"text": "Adjust the tail pulley", "cites": [2], "quote": 7}]), {})
    emptied = score_item(item, {"passages": passages, "generated": None}, {"gate_empty": True})
    summary_only = score_item(item, answer([]), {})  # a summary and no step: nothing to act on
    not_asked = score_item(item, {"passages": passages, "generated": None}, {})
    assert (from_a03.usable, from_a03.quoted_from_expected, from_a03.step_recall) == (True, True, 1.0)
    assert (mixed.quoted_from_expected, emptied.usable, emptied.step_recall) == (False, False, 0.0)
    assert not_asked.usable is None and summary_only.usable is False
    summary = summarize([from_a03, mixed, emptied, summary_only, not_asked])
    assert (summary["usable"], summary["quoted_from_expected"]) == (0.5, 0.5)
    # A step quoting the standard procedure: the row of the top likely code the model was given.
    row_step = [{"text": "Clean the pulley lagging", "cites": [], "quote": 1}]
    likely_a03 = score_item(item, {**answer(row_step), "likely_codes": [{"code": "a-03"}, {"code": "A02"}]}, {})
    likely_a02 = score_item(item, {**answer(row_step), "likely_codes": [{"code": "A02"}, {"code": "A03"}]}, {})
    assert (likely_a03.quoted_from_expected, likely_a02.quoted_from_expected) == (True, False)


def test_data_build_writes_targets_in_the_adapters_mode(tmp_path: Path) -> None:
    from models.dataset import build_dataset
    from models.dataset_sources import read_sources

    sources = read_sources([REPO / "kb" / "sample"])
    for mode in ("free", "quote"):
        summary = build_dataset(sources, tmp_path / mode, holdout_months=0, answer_mode=mode, languages=("en",))
        assert summary.answer_mode == mode and summary.train > 0
        rows = [json.loads(line) for line in (tmp_path / mode / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        for row in rows:
            system, user, assistant = (m["content"] for m in row["messages"])
            target = json.loads(assistant)
            assert system == prompt.system_prompt(mode)
            if mode == "free":
                assert "summary" in target and "s" not in target["steps"][0]
                continue
            # what the quote grammar allows: steps first, each a numbered sentence listed in the prompt
            assert assistant.startswith('{"steps": [{"s": ') and list(target) == ["steps", "summary"]
            assert target["steps"] and len(target["steps"]) <= quote.MAX_STEPS
            for step in target["steps"]:
                assert f"({step['s']}) {step['text']}" in user
            if user.startswith("Answer language: Traditional Chinese"):
                assert target["summary"] == ""  # the model does not write Chinese: no free text to learn
