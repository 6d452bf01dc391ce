"""The real Grbl corpus, unchanged, through kb/mappings/grbl.toml: build, then ask.

Grbl prints `error:N` and `ALARM:N`; both tables number from 1, so the mapping gives each
table its prefix. Titles and steps must be Grbl's own words, and retrieval for a known
code must cite the part of interface.md that lists that code.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
GRBL = REPO.parent / "shared" / "corpora" / "grbl"
MAPPING = REPO / "kb" / "mappings" / "grbl.toml"

pytestmark = pytest.mark.skipif(not GRBL.is_dir(), reason="the shared Grbl corpus is not beside the repo")


def _row(name: str, code: str) -> list[str]:
    with open(GRBL / name, newline="", encoding="utf-8") as handle:
        return next(row for row in csv.reader(handle) if row[0] == code)


@pytest.fixture(scope="module")
def grbl_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("grbl_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIFU_HOME", str(home))
        from appliance.cli.main import cli

        result = CliRunner().invoke(cli, ["kb", "build", str(GRBL), "--mapping", str(MAPPING), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["activated"] and report["codes"] == 46  # 37 error rows + 9 alarm rows
        assert report["warnings"] == []
        yield home


def _ask(home: Path, monkeypatch: pytest.MonkeyPatch, query: str) -> dict[str, Any]:
    from appliance.cli.main import cli

    monkeypatch.setenv("SHIFU_HOME", str(home))
    result = CliRunner().invoke(cli, ["ask", query, "--no-llm", "--json", "--lang", "en"])
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_error_9_is_grbls_own_gcode_lock(grbl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, title, description = _row("error_codes_en_US.csv", "9")
    answer = _ask(grbl_home, monkeypatch, "error:9")
    assert answer["normalized"] == "ERROR9"
    code = answer["code"]
    assert (code["code"], code["title"], code["severity"]) == ("error:9", title, "warning")
    assert " ".join(code["steps"]) == description  # steps are the description's sentences
    cited = [(p["source"], p["section"]) for p in answer["passages"]]
    assert ("interface.md", "Grbl Response Messages") in cited, cited
    table = next(p for p in answer["passages"] if p["section"] == "Grbl Response Messages")
    assert "| **`9`** | G-code locked out during alarm or jog state |" in table["text"]


def test_alarm_1_is_grbls_own_hard_limit(grbl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, title, description = _row("alarm_codes_en_US.csv", "1")
    answer = _ask(grbl_home, monkeypatch, "ALARM:1")
    code = answer["code"]
    assert (code["code"], code["title"].strip(), code["severity"]) == ("ALARM:1", title.strip(), "critical")
    assert " ".join(code["steps"]) == description.strip()
    cited = [(p["source"], p["section"]) for p in answer["passages"]]
    assert ("interface.md", "Grbl Push Messages > Alarm Message") in cited, cited


def test_prefix_keeps_error_and_alarm_apart(grbl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = _ask(grbl_home, monkeypatch, "error:1")["code"]
    alarm = _ask(grbl_home, monkeypatch, "alarm 1")["code"]  # as an operator types it
    assert error["title"] == _row("error_codes_en_US.csv", "1")[1]
    assert alarm["code"] == "ALARM:1"


def test_settings_table_and_manuals_are_searchable(grbl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.cli.main import cli

    monkeypatch.setenv("SHIFU_HOME", str(grbl_home))
    result = CliRunner().invoke(cli, ["kb", "search", "homing cycle enable limit switches", "--json", "-k", "8"])
    assert result.exit_code == 0, result.output
    passages = json.loads(result.stdout)
    sources = {p["source"] for p in passages}
    assert "setting_codes_en_US.csv" in sources and "settings.md" in sources
    assert all(p["source"] != "NOTICE.md" for p in passages)
    row = next(p for p in passages if p["source"] == "setting_codes_en_US.csv")
    assert "name: Homing cycle enable" in row["text"]
