"""`shifu ask` and friends through the real CLI: JSON schema, exit codes, fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from appliance.cli.main import cli

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "appliance/schemas/answer.schema.json").read_text())


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def parse(output: str) -> dict:
    return json.loads(output[output.index("{") :])


def test_ask_json_matches_schema_with_model(kb_home: Path) -> None:
    code, output = run("ask", "A03", "--machine", "CV-01", "--lang", "en", "--json")
    assert code == 0
    data = parse(output)
    jsonschema.validate(data, SCHEMA)
    assert data["model_available"] is True
    assert data["generated"]["steps"]
    assert data["code"]["code"] == "A03"
    assert data["kb_version"] == 1
    ids = {p["id"] for p in data["passages"]}
    assert set(data["generated"]["cites"]) <= ids


def test_ask_json_no_llm(kb_home: Path) -> None:
    code, output = run("ask", "E-203", "--machine", "IM-01", "--lang", "zh-TW", "--json", "--no-llm")
    assert code == 0
    data = parse(output)
    jsonschema.validate(data, SCHEMA)
    assert data["generated"] is None and data["model_available"] is False
    assert data["code"]["lang"] == "zh-TW" and data["code"]["steps"]


def test_ask_text_shows_procedure_first(kb_home: Path) -> None:
    code, output = run("ask", "A03", "--machine", "CV-01", "--lang", "en", "--no-llm")
    assert code == 0
    assert "Standard procedure" in output
    assert output.index("Standard procedure") < output.index("AI explanation")


@pytest.mark.parametrize("how", ["missing", "corrupt", "truncated"])
def test_broken_model_still_gives_the_procedure(kb_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                how: str) -> None:
    from models.registry import embedded_model_path

    path = tmp_path / "model.gguf"
    if how == "corrupt":
        path.write_bytes(b"\x00garbage" * 1000)
    elif how == "truncated":
        path.write_bytes(embedded_model_path().read_bytes()[: 1 << 20])  # a real header, cut after 1 MiB
    monkeypatch.setenv("SHIFU_MODEL__PATH", str(path))
    code, output = run("ask", "A03", "--machine", "CV-01", "--lang", "en", "--json")
    assert code == 0
    data = parse(output)
    jsonschema.validate(data, SCHEMA)
    assert data["model_available"] is False
    assert data["generated"] is None
    assert data["code"]["steps"] and data["passages"]
    assert any("model" in n for n in data["notices"])


@pytest.mark.parametrize("bad", ["", "   ", "x" * 600, "A0\x071"])
def test_bad_input_exit_code_2(kb_home: Path, bad: str) -> None:
    code, output = run("ask", bad, "--no-llm")
    assert code == 2
    assert "shifu:" in output


def test_no_kb_is_a_clear_failure(home: Path) -> None:
    code, output = run("ask", "A03", "--no-llm", "--json")
    assert code == 0  # the answer object still comes, saying why it is empty
    data = parse(output)
    assert data["code"] is None
    assert any("shifu kb build" in n for n in data["notices"])


def test_kb_status_and_doctor(kb_home: Path) -> None:
    code, output = run("kb", "status", "--json")
    assert code == 0
    status = json.loads(output)
    assert status["version"] == 1 and status["counts"]["codes"] >= 60
    code, output = run("doctor", "--json")
    report = json.loads(output)
    names = {c["name"]: c for c in report["checks"]}
    assert names["kb"]["ok"] and names["model"]["ok"] and names["database"]["ok"]
    assert code == 0


def test_kb_build_reports_collisions(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "codes").mkdir(parents=True)
    (source / "codes" / "t.csv").write_text(
        "code,title,steps,lang\nE-203,One,a | b,en\nE203,Two,c | d,en\n", encoding="utf-8"
    )
    code, output = run("kb", "build", str(source))
    assert code == 1
    assert "E-203" in output and "E203" in output
