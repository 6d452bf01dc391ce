"""Parsers, line framing, rate limit and duplicate window: pure logic, no ports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.serial.framing import LineFramer
from appliance.serial.parsers import make_parser
from appliance.serial.rate import DuplicateFilter, TokenBucket
from kb.errors import SerialError
from kb.normalize import code_key

GRBL = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "grbl"


def interface_lines() -> list[str]:
    """Every line of Grbl's own interface.md that Grbl itself prints (from its code blocks and examples)."""
    text = (GRBL / "interface.md").read_text(encoding="utf-8")
    lines = set()
    for raw in text.splitlines():
        line = raw.strip().strip("`").strip()
        if re.fullmatch(
            r"ok|<[^>]*>|\[(MSG|GC|HLP|VER|OPT|G5\d|G28|G30|G92|TLO|PRB|echo):.*\]|\$\d+=.*|\$N\d=.*", line
        ):
            lines.add(line)
    for found in re.findall(r"`(<[^`]*>|\[MSG:[^`]*\]|error:\d+|ALARM:\d+|>[^`]*:(?:ok|error:\w+))`", text):
        lines.add(found)
    return sorted(lines)


def test_grbl_real_lines_from_interface_md() -> None:
    parser = make_parser("grbl")
    lines = interface_lines()
    assert "ok" in lines and "[MSG:Reset to continue]" in lines
    assert any(line.startswith("<Idle|") for line in lines)
    assert any(line.startswith("[GC:") for line in lines)
    kinds = {line: parser.parse(line).kind for line in lines}
    alarms = {line for line, kind in kinds.items() if kind == "alarm"}
    # `error:X` is the document's placeholder for a number, not something Grbl prints.
    assert {line for line, kind in kinds.items() if kind == "garbage"} == {">G54G20:error:X"}
    # The only alarm-shaped examples in the document are the startup-line failures.
    assert all(re.search(r"error:\w+$", line) for line in alarms)


@pytest.mark.parametrize(
    ("line", "code", "key"),
    [
        ("error:9", "error:9", "ERROR9"),
        ("ALARM:1", "ALARM:1", "ALARM1"),
        ("error:20\r", "error:20", "ERROR20"),
        (">:error:7", "error:7", "ERROR7"),
        (">G54G20:error:1", "error:1", "ERROR1"),
    ],
)
def test_grbl_alarms_get_the_typed_code_key(line: str, code: str, key: str) -> None:
    parsed = make_parser("grbl").parse(line)
    assert (parsed.kind, parsed.code, parsed.normalized) == ("alarm", code, key)
    assert parsed.normalized == code_key(code)  # the same key an operator typing it gets


@pytest.mark.parametrize(
    "line",
    [
        "ok",
        "Grbl 1.1h ['$' for help]",
        "<Idle|MPos:0.000,0.000,0.000|FS:0.0,0>",
        "[MSG:Caution: Unlocked]",
        "[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0.0 S0]",
        "$130=200.000",
        "$N0=G54",
        ">G54G20:ok",
        "   ",
    ],
)
def test_grbl_chatter_is_ignored(line: str) -> None:
    assert make_parser("grbl").parse(line).kind == "ignored"


@pytest.mark.parametrize("line", ["ALARM:", "error:x9", "errror:9", "ALARM:1 trailing", "G1 X10", "\ufffd\ufffd"])
def test_grbl_garbage(line: str) -> None:
    assert make_parser("grbl").parse(line).kind == "garbage"


def test_csv_preset() -> None:
    parser = make_parser("csv")
    parsed = parser.parse("M3,A01,BELT TENSION")
    assert (parsed.kind, parsed.machine, parsed.code, parsed.normalized, parsed.message) == (
        "alarm",
        "M3",
        "A01",
        "A01",
        "BELT TENSION",
    )
    full_width = parser.parse(" IM-01 , Ｅ－２０３ , heater, zone 2 ")
    assert (full_width.machine, full_width.normalized, full_width.message) == ("IM-01", "E203", "heater, zone 2")
    assert parser.parse("CV-01,A02").message == ""
    for bad in ("no commas here", ",A01,x", "M3,,x", "M3,  ,x"):
        assert parser.parse(bad).kind == "garbage", bad


def test_custom_regex_and_errors() -> None:
    parser = make_parser(r"(?P<machine>\w+) ALM (?P<code>\d+): (?P<message>.*)")
    parsed = parser.parse("PRESS7 ALM 1002: overtravel")
    assert (parsed.machine, parsed.code, parsed.message) == ("PRESS7", "1002", "overtravel")
    with pytest.raises(SerialError, match="named group `code`"):
        make_parser(r"(?P<machine>\w+)")
    with pytest.raises(SerialError, match="regular expression"):
        make_parser("(unclosed")


def test_framer_splits_cr_lf_and_chunks() -> None:
    framer = LineFramer(64)
    assert [line.text for line in framer.feed(b"ok\r\nALA")] == ["ok"]
    assert [line.text for line in framer.feed(b"RM:1\r\n\r\nerror:9\rok\n")] == ["ALARM:1", "error:9", "ok"]


def test_framer_bounds_a_64k_line_without_newline() -> None:
    framer = LineFramer(4096)
    cut = [line for chunk in range(64) for line in framer.feed(b"X" * 1024)]
    assert len(cut) == 1 and cut[0].cut and len(cut[0].raw) == 4096
    assert len(framer._buf) == 0  # nothing more is held however long the line gets
    rest = framer.feed(b"tail of the long line\nALARM:2\n")
    assert [(line.text, line.cut) for line in rest] == [("ALARM:2", False)]
    assert framer.dropped_bytes == 64 * 1024 - 4096 + len(b"tail of the long line")


def test_framer_replaces_and_counts_invalid_bytes() -> None:
    framer = LineFramer(256)
    lines = framer.feed(b"M3,A01,BELT \xff\xfe TENSION\nM3,A02,\xef\xbf\xbd genuine\n")
    assert lines[0].text == "M3,A01,BELT \ufffd\ufffd TENSION" and lines[0].invalid_bytes == 2
    assert lines[1].invalid_bytes == 0


def test_token_bucket_uses_the_clock_it_is_given() -> None:
    now = [100.0]
    bucket = TokenBucket(rate_per_minute=6, burst=2, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    now[0] += 9.9
    assert not bucket.allow()
    now[0] += 0.2  # 10 s = one token at 6 a minute
    assert bucket.allow() and not bucket.allow()


def test_duplicate_window_runs_from_the_stored_alarm() -> None:
    now = [0.0]
    dups = DuplicateFilter(30.0, clock=lambda: now[0])
    assert dups.existing(("M3", "A01")) is None
    dups.remember(("M3", "A01"), 7)
    now[0] = 29.0
    assert dups.existing(("M3", "A01")) == 7
    assert dups.existing(("M4", "A01")) is None
    now[0] = 30.5
    assert dups.existing(("M3", "A01")) is None  # a new row once the window has passed
    assert DuplicateFilter(0).existing("x") is None


def test_duplicate_filter_stays_bounded_and_forgets_the_oldest() -> None:
    dups = DuplicateFilter(60.0, clock=lambda: 0.0, max_keys=3)
    for alarm_id, code in enumerate(["A1", "A2", "A3", "A4"]):
        dups.remember(code, alarm_id)
    assert dups.existing("A1") is None  # forgotten: a repeat of it becomes a new row, never a lost one
    assert [dups.existing(code) for code in ("A2", "A3", "A4")] == [1, 2, 3]
