"""The handover's generated note: shown only when it states the shift's facts and nothing else.

The model here is tests/scripted.py's ScriptedModel (a fake that says so): the gate is judged on
exact texts a model might write. The real embedded model is run by the last test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from appliance.report.handover import Handover, HandoverAlarm, Shift, write_handover
from appliance.report.narrative import gate, generate_note
from tests.scripted import ScriptedModel

SHIFU = Path(sys.executable).parent / "shifu"


def alarm(id_: int, machine: str, code: str, state: str) -> HandoverAlarm:
    return HandoverAlarm(id_, 0.0, machine, "CV-200", code, "Drive motor overload", 0, state, None, "", "")


HANDOVER = Handover(Shift.parse(date(2026, 3, 2), "22:00-06:00"),
                    (alarm(1, "CV-01", "A01", "fixed"), alarm(2, "CV-01", "A01", "open"),
                     alarm(3, "IM-03", "E-203", "escalated")),
                    (("CV-01", "A01", 2),))


@pytest.mark.parametrize(("text", "lang", "shown"), [
    ("3 alarms this shift: 1 fixed, 1 escalated and 1 still open. A01 on CV-01 came twice.", "en", True),
    ("本班 3 件警報，1 件已修復；CV-01 的 A01 重複 2 次，IM-03 的 E-203 已呼叫技術人員。", "zh-TW", True),
    ("3 alarms this shift; E-999 on CV-01 is still open.", "en", False),  # a code that was not in the shift
    ("7 alarms this shift, 1 fixed.", "en", False),  # a count it invented
    ("A01 on CV-07 is still open.", "en", False),  # a machine that was not in the shift
    ("3 alarms this shift; write to boss@plant.example for help.", "en", False),  # a contact nobody gave it
    ("You write a two-sentence shift handover note for maintenance technicians.", "en", False),  # an echo
    ("A01 on CV-01 is open: bypass the safety door switch to restart.", "en", False),  # unsafe
    ("3 alarms this shift, 1 fixed.", "zh-TW", False),  # not the report's language
    ("The two-sentence shift handover note is: - alarms this shift: 3 - fixed: 1", "en", False),  # seen: SmolLM2
    ("你為維修技術人員寫兩句交接班摘要：本班 3 件警報。", "zh-TW", False),  # the instructions copied
    ("", "en", False),
])
def test_gate(text: str, lang: str, shown: bool) -> None:
    assert (gate(text, HANDOVER, lang) is not None) is shown


def test_generated_note_is_gated_and_labelled(tmp_path: Path) -> None:
    good = ScriptedModel(text="3 alarms this shift: 1 fixed, 1 escalated and 1 still open.")
    note = generate_note(good, HANDOVER, "en")
    assert note == "3 alarms this shift: 1 fixed, 1 escalated and 1 still open."
    prompt = good.prompts[0][1]["content"]
    assert "open: machine CV-01 code A01" in prompt and "escalated: machine IM-03 code E-203" in prompt
    write_handover(HANDOVER, tmp_path, "en", note)
    page = (tmp_path / "handover.html").read_text(encoding="utf-8")
    assert "Generated note" in page and note in page
    english_only = ScriptedModel(text="本班 3 件警報。", languages=("en",))
    assert generate_note(english_only, HANDOVER, "zh-TW") is None and english_only.prompts == []
    assert generate_note(ScriptedModel(text="9 alarms."), HANDOVER, "en") is None


def test_cli_summary_with_the_embedded_model(tmp_path: Path, built_home: Path) -> None:
    """The real model: the handover is written either way; a note appears only if it passed the gate."""
    import shutil

    from tests.test_report_handover import _store

    home = tmp_path / "home"
    shutil.copytree(built_home, home, symlinks=True)
    _store(home / "ops.sqlite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFU_")}
    env.update({"SHIFU_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    result = subprocess.run([str(SHIFU), "report", "handover", "--date", "2023-03-05", "--shift", "22:00-06:00",
                             "--out", str(tmp_path / "out"), "--lang", "en", "--summary"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out" / "handover.html").read_text(encoding="utf-8")
    assert "4 alarms this shift" in page
    if "Generated note" in page:
        from html import unescape

        note = unescape(page.split("Generated note", 1)[1].split("<p>", 1)[1].split("</p>", 1)[0])
        assert gate(note, _handover_of(home), "en") == note
    else:
        assert "no generated note" in result.stderr


def _handover_of(home: Path) -> Handover:
    from appliance.report.handover import build_handover
    from kb.versions import VersionStore

    versions = VersionStore(home / "kb")
    return build_handover(home / "ops.sqlite", Shift.parse(date(2023, 3, 5), "22:00-06:00"),
                          versions.path(versions.current()), "en")  # type: ignore[arg-type]
