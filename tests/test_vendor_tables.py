"""Vendor code tables in their own formats (issue 15 item 5).

Readers: YAML and JSON tables (a list of records at a dotted root, nested keys by dotted path,
scalars as written), a row for several machine models (a list, or ` | ` in a CSV cell), and
model-dependent codes (`prefix_by_model`, `XX101` -> `13101` on an X1).

Then a real build of a printer maker's table in its own shape (tests/vendor_table.py: 96 vendor
codes, 288 codes over four models) and real `shifu ask --json` / `shifu kb search --json`:
a code is its model's row; a text stored once per model is one passage listing its models;
the top sources are never copies of one text; with the machine model known, only its rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from kb.errors import SourceError
from kb.source.codes import read_codes
from kb.source.mapping import FileRule
from tests.vendor_table import MODELS, PREFIXES, Row, write_source

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "appliance/schemas/answer.schema.json").read_text())
PASSAGE_LIST = {"type": "array", "items": {"$ref": "#/$defs/passage"}, "$defs": SCHEMA["$defs"]}

NESTED_YAML = """\
vendor:
  name: ACME extruders
  errors:
    - code: 0101
      message: {en: Nozzle clogged, de: Düse verstopft}
      remedy:
        - {text: Heat the nozzle to 250 C}
        - {text: Push the filament through by hand}
      models: [P1, P2]
      level: critical
    - code: "1.10"
      message: {en: Fan slow}
      remedy:
        - {text: Clean the fan}
      models: []
      level: ~
"""

NESTED_JSON = {
    "vendor": {
        "name": "ACME extruders",
        "errors": [
            {"code": "0101", "message": {"en": "Nozzle clogged", "de": "Düse verstopft"},
             "remedy": [{"text": "Heat the nozzle to 250 C"}, {"text": "Push the filament through by hand"}],
             "models": ["P1", "P2"], "level": "critical"},
            {"code": 1.10, "message": {"en": "Fan slow"}, "remedy": [{"text": "Clean the fan"}], "models": [],
             "level": None},
        ],
    }
}

NESTED_RULE = FileRule(match="*", role="codes", root="vendor.errors", lang="en",
                       columns={"title": "message.en", "steps": "remedy.text", "machine_model": "models",
                                "severity": "level"})


def _shape(entries: list[Any]) -> list[tuple[str, str, str, tuple[str, ...], str]]:
    return [(e.code, e.machine_model, e.title, e.steps, e.severity) for e in entries]


EXPECTED_NESTED = [
    ("0101", "P1", "Nozzle clogged", ("Heat the nozzle to 250 C", "Push the filament through by hand"), "critical"),
    ("0101", "P2", "Nozzle clogged", ("Heat the nozzle to 250 C", "Push the filament through by hand"), "critical"),
    ("1.10", "", "Fan slow", ("Clean the fan",), "warning"),
]


def test_yaml_table_at_a_dotted_root_with_nested_keys(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(NESTED_YAML, encoding="utf-8")
    # 0101 stays 0101 (not the octal 65), 1.10 stays 1.10, `~` is an empty cell; a row per listed model.
    assert _shape(read_codes(path, "acme.yaml", NESTED_RULE, "en")) == EXPECTED_NESTED


def test_json_table_reads_like_the_yaml_one(tmp_path: Path) -> None:
    path = tmp_path / "acme.json"
    path.write_text(json.dumps(NESTED_JSON, ensure_ascii=False).replace("1.1,", "1.10,"), encoding="utf-8")
    assert '"code": 1.10' in path.read_text()  # a JSON number, kept as written
    assert _shape(read_codes(path, "acme.json", NESTED_RULE, "en")) == EXPECTED_NESTED


def test_a_list_document_or_its_only_list_needs_no_root(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- {code: A1, title: Door open, steps: [Close the door]}\n", encoding="utf-8")
    keyed = tmp_path / "keyed.yml"
    keyed.write_text("version: 3\nErrors:\n  - {code: A1, title: Door open, steps: [Close the door]}\n")
    for path in (listed, keyed):
        [entry] = read_codes(path, path.name, None, "en")
        assert (entry.code, entry.title, entry.steps) == ("A1", "Door open", ("Close the door",))


def test_unclear_or_wrong_structure_is_named(tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    two.write_text("errors: [{code: A1, title: T, steps: S}]\nwarnings: [{code: W1, title: T, steps: S}]\n")
    with pytest.raises(SourceError, match=r"two\.yaml: which list holds the records\? .*errors, warnings"):
        read_codes(two, "two.yaml", None, "en")
    with pytest.raises(SourceError, match=r"two\.yaml: no key 'errors\.list'"):
        read_codes(two, "two.yaml", FileRule(match="*", role="codes", root="errors.list"), "en")
    bad = tmp_path / "bad.yaml"
    bad.write_text("errors:\n  - {code: A1, title: T, steps: S}\n  - {code: A2, steps: S}\n")
    with pytest.raises(SourceError, match=r"bad\.yaml record 2: column 'title' is empty"):
        read_codes(bad, "bad.yaml", None, "en")


def test_csv_cell_lists_several_models(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,title,steps,machine_model\nE-5,Guard open,Close the guard | Press reset,CV-200 | CV-300\n"
                    "E-6,Belt slip,Check tension,\n", encoding="utf-8")
    entries = read_codes(path, "codes.csv", None, "en")
    assert [(e.code, e.machine_model, e.steps) for e in entries] == [
        ("E-5", "CV-200", ("Close the guard", "Press reset")),
        ("E-5", "CV-300", ("Close the guard", "Press reset")),
        ("E-6", "", ("Check tension",)),
    ]


def test_prefix_by_model_gives_each_model_its_display_number(tmp_path: Path) -> None:
    path = tmp_path / "codes.yaml"
    path.write_text(
        "Errors:\n"
        "  - {code: XX101, printers: [X1, x2], title: Stuck filament, text: Unload the filament.}\n"
        "  - {code: XX203, title: Thermal runaway, text: Check the thermistor.}\n"  # every model
        "  - {code: 99, title: Unknown, text: Restart.}\n",  # no placeholder: one row for every model
        encoding="utf-8")
    rule = FileRule(match="*", role="codes", prefix_by_model={"X1": "13", "X2": "17"},
                    columns={"machine_model": "printers", "description": "text"}, steps_from="description")
    entries = read_codes(path, "codes.yaml", rule, "en")
    assert [(e.code, e.key, e.machine_model) for e in entries] == [
        ("13101", "13101", "X1"), ("17101", "17101", "x2"),  # model names match regardless of case
        ("13203", "13203", "X1"), ("17203", "17203", "X2"),
        ("99", "99", ""),
    ]
    path.write_text("Errors:\n  - {code: XX101, printers: [X1, X9], title: Stuck, text: Unload.}\n")
    with pytest.raises(SourceError, match=r"codes\.yaml record 1: .*'XX' but prefix_by_model has no entry "
                                          r"for model 'X9' \(it has X1, X2\)"):
        read_codes(path, "codes.yaml", rule, "en")


def test_the_vendor_table_as_csv_reads_like_the_yaml(tmp_path: Path) -> None:
    """The same table converted to CSV (models ` | `-separated) gives the same 288 codes."""
    import csv
    import tomllib

    from tests.vendor_table import records

    rows = write_source(tmp_path / "yaml")
    mapping = tomllib.loads((tmp_path / "yaml" / "kb.toml").read_text())
    [yaml_rule] = [FileRule.model_validate(rule) for rule in mapping["files"]]
    from_yaml = read_codes(tmp_path / "yaml" / "error-codes.yaml", "vendor table", yaml_rule, "en")
    path = tmp_path / "error-codes.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Code", "Printers", "Title", "Text", "Severity"])
        for record in records()[0]:
            printers = record.get("printers", [])
            assert isinstance(printers, list) and isinstance(record["meta"], dict)
            writer.writerow([record["code"], " | ".join(printers), record["title"], record["text"],
                             record["meta"]["severity"]])
    csv_rule = yaml_rule.model_copy(update={"root": None, "columns": {"machine_model": "Printers",
                                                                      "description": "Text"}})
    from_csv = read_codes(path, "vendor table", csv_rule, "en")
    assert len(from_csv) == len(rows) == 288
    assert from_csv == from_yaml
    assert [(e.code, e.machine_model, e.description) for e in from_yaml] == [(r.code, r.model, r.text) for r in rows]


def test_one_procedure_for_several_models_is_shown_without_asking(tmp_path: Path) -> None:
    """A row written for several models is one procedure: no "which machine?" unless the texts differ."""
    from kb.build import SourceSpec, build
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore

    source = tmp_path / "src"
    (source / "codes").mkdir(parents=True)
    (source / "codes" / "codes.csv").write_text(
        "code,title,steps,machine_model\n"
        "E-5,Guard open,Close the guard | Press reset,CV-200 | CV-300\n"
        "E-6,Belt slip,Clean the drive pulley,CV-200\n"
        "E-6,Belt slip,Tighten the belt,CV-300\n", encoding="utf-8")
    store = VersionStore(tmp_path / "kb")
    build([SourceSpec(source)], store, None)
    kb = KnowledgeBase(store.current_path(), None)
    try:
        shared = kb.lookup("E-5", lang="en")
        assert not shared.ambiguous and shared.entry is not None
        assert shared.entry.steps == ("Close the guard", "Press reset") and shared.entry.machine_model == ""
        assert sorted(c.machine_model for c in shared.candidates) == ["CV-200", "CV-300"]
        own = kb.lookup("E-6", lang="en")
        assert own.ambiguous and own.entry is None and len(own.candidates) == 2
        # A known machine of a model without the code is still asked about, never given another's row.
        assert kb.lookup("E-5", machine_model="CV-900", lang="en").ambiguous
        own_row = kb.lookup("E-5", machine_model="CV-300", lang="en").entry
        assert own_row is not None and own_row.machine_model == "CV-300"
    finally:
        kb.close()


def test_a_version_built_before_chunk_models_still_searches(tmp_path: Path) -> None:
    """A KB version built by the previous release (no chunks.machine_model/variant) keeps answering."""
    import shutil
    import sqlite3

    from kb.build import SourceSpec, build
    from kb.reader import KnowledgeBase
    from kb.versions import DB_NAME, VersionStore

    source = tmp_path / "src"
    (source / "codes").mkdir(parents=True)
    (source / "codes" / "press.yaml").write_text(
        "- {code: P-10, title: Oil too hot, steps: [Stop the pump, Clean the cooler], machine_model: [PR-5, PR-6]}\n")
    store = VersionStore(tmp_path / "kb")
    build([SourceSpec(source)], store, None)
    old = tmp_path / "old"
    shutil.copytree(store.current_path(), old)
    conn = sqlite3.connect(old / DB_NAME)
    with conn:
        conn.execute("DROP INDEX chunks_variant")
        conn.execute("ALTER TABLE chunks DROP COLUMN variant")
        conn.execute("ALTER TABLE chunks DROP COLUMN machine_model")
    conn.close()
    for folder, expected in ((store.current_path(), [["PR-5", "PR-6"]]), (old, [[], []])):
        kbase = KnowledgeBase(folder)
        try:
            found = kbase.search("oil too hot cooler", 5).passages
            assert [list(p.machine_models) for p in found] == expected, folder
        finally:
            kbase.close()


def test_yaml_and_json_among_the_manuals_are_tables_only_by_a_mapping_rule(tmp_path: Path) -> None:
    from kb.build import SourceSpec, build
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore

    source = tmp_path / "src"
    (source / "codes").mkdir(parents=True)
    (source / "manuals").mkdir()
    (source / "codes" / "press.json").write_text('[{"code": "P-10", "title": "Oil too hot", "steps": ["Stop"]}]')
    (source / "manuals" / "export.json").write_text('{"exported": "2024-05-01", "settings": {"speed": 3}}')
    (source / "manuals" / "presets.yaml").write_text("- {preset: slow, speed: 2 m/min}\n- {preset: fast, speed: 9 m/min}\n")
    store = VersionStore(tmp_path / "kb")
    report = build([SourceSpec(source)], store, None)
    assert report.codes == 1 and report.chunks == 1
    assert sorted(report.warnings) == ["manuals/export.json: unsupported manual format, ignored",
                                       "manuals/presets.yaml: unsupported manual format, ignored"]
    (source / "kb.toml").write_text('[[files]]\nmatch = "manuals/presets.yaml"\nrole = "manual"\nlang = "en"\n')
    report = build([SourceSpec(source)], store, None)
    assert report.chunks == 3 and report.warnings == ["manuals/export.json: unsupported manual format, ignored"]
    kbase = KnowledgeBase(store.current_path())
    try:
        assert "speed: 9 m/min" in kbase.search("fast preset speed", 1, mode="fts").passages[0].text
    finally:
        kbase.close()


# -- a printer maker's table, built and asked for real ----------------------------------------
@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[tuple[Path, list[Row]]]:
    root = tmp_path_factory.mktemp("vendor")
    rows = write_source(root / "printers")
    home = root / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIFU_HOME", str(home))
        from appliance.cli.main import cli

        result = CliRunner().invoke(cli, ["kb", "build", str(root / "printers"), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["activated"] and report["warnings"] == []
        assert report["codes"] == len(rows) == 288 and report["chunks"] == 288  # one row per code and model
        yield home, rows


def _cli(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from appliance.cli.main import cli

    monkeypatch.setenv("SHIFU_HOME", str(home))
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _ask(home: Path, monkeypatch: pytest.MonkeyPatch, query: str, *options: str) -> dict[str, Any]:
    answer: dict[str, Any] = _cli(home, monkeypatch, "ask", query, "--no-llm", "--json", "--lang", "en", *options)
    jsonschema.validate(answer, SCHEMA)
    return answer


def _body(passage: dict[str, Any]) -> str:
    """A code row's text without its code (copies for other models differ only there)."""
    first, _, rest = passage["text"].partition("\n")
    return f"{first.split(' ', 1)[-1]}\n{rest}"


def _row(rows: list[Row], code: str) -> Row:
    return next(r for r in rows if r.code == code)


def test_13101_is_the_x1_row_and_17101_the_same_text_on_the_x2(
        vendor: tuple[Path, list[Row]], monkeypatch: pytest.MonkeyPatch) -> None:
    home, rows = vendor
    x1, x2 = _row(rows, "13101"), _row(rows, "17101")
    assert x1.text == x2.text and x1.vendor_code == x2.vendor_code == "XX101"
    for row, model in ((x1, "X1"), (x2, "X2")):
        answer = _ask(home, monkeypatch, row.code, "--model", model)
        code = answer["code"]
        assert (code["code"], code["machine_model"], code["title"]) == (row.code, model, row.title)
        assert " ".join(code["steps"]) == row.text
        own = [p for p in answer["passages"] if p["section"].startswith(f"{row.code} ")]
        assert [p["machine_models"] for p in own] == [[model]]
        # Only this model's rows among the sources: no other printer's copy of the same text.
        assert all(p["machine_models"] in ([], [model]) for p in answer["passages"]), answer["passages"]
        vendor_rows = [p["section"] for p in answer["passages"] if p["source"] == "error-codes.yaml"]
        assert len(vendor_rows) > 1 and all(s.startswith(PREFIXES[model]) for s in vendor_rows), vendor_rows
        assert not [p["section"] for p in answer["passages"] if _body(p) == _body(own[0]) and p is not own[0]]


def test_one_vendor_code_with_its_own_text_per_model(
        vendor: tuple[Path, list[Row]], monkeypatch: pytest.MonkeyPatch) -> None:
    home, rows = vendor
    per_model = [r for r in rows if r.vendor_code == "XX104"]
    assert [r.model for r in per_model] == list(MODELS) and len({r.text for r in per_model}) == 4
    for row in per_model:
        code = _ask(home, monkeypatch, row.code, "--model", row.model)["code"]
        assert (code["code"], code["machine_model"]) == (row.code, row.model)
        assert code["steps"][-1] == row.text.rsplit(". ", 1)[-1]  # the model's own hint, not another's
    # A display number names its printer: typed without a machine, scanned from the printer's QR
    # code or written in a sentence, it is still that model's row.
    for entry in ("20104", "help.vendor.io/20104", "https://help.vendor.io/20104?lang=en", "Error 20104", "#20104"):
        code = _ask(home, monkeypatch, entry)["code"]
        assert code is not None and (code["code"], code["machine_model"]) == ("20104", "X4"), entry


def _shared(rows: list[Row]) -> Row:
    """A text that all four models share (stored four times), asked about as a symptom."""
    return next(r for r in rows if r.title == "HEATBED OVERHEAT")


def test_a_symptom_gets_one_passage_per_text_listing_every_model(
        vendor: tuple[Path, list[Row]], monkeypatch: pytest.MonkeyPatch) -> None:
    home, rows = vendor
    shared = _shared(rows)
    assert shared.shared_with == MODELS
    answer = _ask(home, monkeypatch, "heatbed temperature above its limit, check the heatbed connector")
    passages = answer["passages"]
    assert len(passages) == 5
    bodies = [_body(p) for p in passages]
    assert len(set(bodies)) == len(bodies), [p["section"] for p in passages]  # no copies of one text
    best = passages[0]
    assert best["text"].endswith(shared.text) and best["machine_models"] == sorted(MODELS)
    for passage in passages:  # each passage lists exactly the models whose row holds its text
        title = passage["text"].split("\n", 1)[0].split(" ", 1)[1]
        holders = {r.model for r in rows if r.title == title and _body(passage).endswith(r.text)}
        assert passage["machine_models"] == sorted(holders), passage


def test_shifu_ask_text_lists_the_models_of_a_shared_source(
        vendor: tuple[Path, list[Row]], monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.cli.main import cli

    home, _ = vendor
    monkeypatch.setenv("SHIFU_HOME", str(home))
    result = CliRunner().invoke(cli, ["ask", "heatbed temperature above its limit", "--no-llm", "--lang", "en"])
    assert result.exit_code == 0, result.output
    sources = result.output.split("Sources:", 1)[1]
    assert "HEATBED OVERHEAT" in sources and "[X1, X2, X3, X4]" in sources, sources
    assert sources.count("HEATBED OVERHEAT") == 1


def test_a_symptom_on_a_known_model_shows_only_its_rows(
        vendor: tuple[Path, list[Row]], monkeypatch: pytest.MonkeyPatch) -> None:
    home, rows = vendor
    answer = _ask(home, monkeypatch, "heatbed temperature above its limit, check the heatbed connector",
                  "--model", "X2")
    passages = answer["passages"]
    assert passages[0]["section"].startswith("17201 HEATBED OVERHEAT")
    assert all(p["machine_models"] == ["X2"] and p["section"].startswith("17") for p in passages), passages


def test_kb_search_json_collapses_copies_and_filters_by_model(
        vendor: tuple[Path, list[Row]], monkeypatch: pytest.MonkeyPatch) -> None:
    home, rows = vendor
    query = "hotend overcurrent circuit heater cartridge"
    found = _cli(home, monkeypatch, "kb", "search", query, "--json", "-k", "5")
    jsonschema.validate(found, PASSAGE_LIST)
    bodies = [_body(p) for p in found]
    assert len(found) == 5 and len(set(bodies)) == 5, [p["section"] for p in found]
    hotend = _row(rows, next(r.code for r in rows if r.title == "HOTEND OVERCURRENT"))
    assert found[0]["text"].endswith(hotend.text) and found[0]["machine_models"] == sorted(hotend.shared_with)
    on_x3 = _cli(home, monkeypatch, "kb", "search", query, "--json", "-k", "5", "--model", "X3")
    assert all(p["machine_models"] == ["X3"] and p["section"].startswith("12") for p in on_x3), on_x3


def test_the_http_client_keeps_a_passages_models() -> None:
    """A kiosk on `--engine URL` reads the answer JSON back: the models of a shared source survive."""
    from appliance.server.events import passage_from_json
    from kb.types import Passage

    shared = Passage(id="c1", source="error-codes.yaml", section="13201 HEATBED OVERHEAT (X1)", text="t", n=1,
                     machine_models=("X1", "X2", "X3", "X4"))
    again = passage_from_json(json.loads(json.dumps(shared.to_json())))
    assert again.machine_models == shared.machine_models and again.to_json() == shared.to_json()


def test_the_kiosk_names_every_model_of_a_shared_source(vendor: tuple[Path, list[Row]], embedder: Any,
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import anyio
    from textual.widgets import Input

    from appliance.config import Settings
    from appliance.engine import Engine
    from appliance.engine.local import LocalClient
    from appliance.ui.app import make_app
    from appliance.ui.widgets.answer_view import AnswerView
    from kb.versions import VersionStore

    home, rows = vendor
    monkeypatch.setenv("SHIFU_HOME", str(home))
    settings = Settings()
    settings.model.enabled = False
    settings.general.lang = "en"
    engine = Engine(settings, VersionStore(home / "kb"), embedder=embedder)
    app = make_app(settings, LocalClient(engine), clock=lambda: "12:00:00", watch_alarms=False,
                   machine_file=tmp_path / "machine.json")
    shown: dict[str, str] = {}

    async def run() -> None:
        async with app.run_test(size=(160, 60)) as pilot:
            app.query_one("#query", Input).value = "heatbed temperature above its limit, check the heatbed connector"
            await pilot.press("enter")
            view: Any = app.query_one(AnswerView)
            for _ in range(1200):
                if view.state is not None and view.state.answer is not None:
                    break
                await pilot.pause(0.05)
            shown.update(view.shown)

    try:
        anyio.run(run)
    finally:
        engine.close()
    first = shown["sources"].splitlines()[1]  # under the heading
    assert first.startswith("[1] error-codes.yaml") and first.endswith(f"[{', '.join(sorted(MODELS))}]"), first
