"""Line parsers: a regular expression with named groups `code`, `machine`, `message`.

Presets:
- `grbl`: Grbl 1.1's `error:N` and `ALARM:N` (also a failed startup line `>G54G20:error:N`);
  `ok`, status reports `<...>`, feedback `[...]` (`[MSG:...]`, `[GC:...]`), setting echoes
  `$N=...` and the welcome `Grbl 1.1h ['$' for help]` are ignored.
- `csv`: `MACHINE,CODE,MESSAGE`, e.g. `M3,A01,BELT TENSION`.

Anything else given as a parser is compiled as a regular expression that must contain a
`code` group. Lines that are neither an alarm nor ignored are garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from kb.errors import SerialError
from kb.normalize import code_key

Kind = Literal["alarm", "ignored", "garbage", "scan"]


@dataclass(frozen=True)
class Parsed:
    """What one line meant (`scan`: a scanner port's line, the text in `message`)."""

    kind: Kind
    code: str = ""
    normalized: str = ""
    machine: str = ""
    message: str = ""


IGNORED = Parsed("ignored")
GARBAGE = Parsed("garbage")


class LineParser:
    """Match a whole (stripped) line against `pattern`; `ignore` patterns are checked first."""

    def __init__(self, name: str, pattern: re.Pattern[str], ignore: tuple[re.Pattern[str], ...] = ()) -> None:
        if "code" not in pattern.groupindex:
            raise SerialError(f"serial parser {name!r} has no named group `code`; write it as (?P<code>...)")
        self.name = name
        self.pattern = pattern
        self.ignore = ignore

    def parse(self, line: str) -> Parsed:
        text = line.strip()
        if not text:
            return IGNORED
        match = self.pattern.fullmatch(text)
        if match is None:
            if any(p.fullmatch(text) for p in self.ignore):
                return IGNORED
            return GARBAGE
        groups = match.groupdict()
        code = (groups.get("code") or "").strip()
        key = code_key(code)
        if not key:
            return GARBAGE
        return Parsed(
            "alarm",
            code=code,
            normalized=key,
            machine=(groups.get("machine") or "").strip(),
            message=(groups.get("message") or "").strip(),
        )


_GRBL = LineParser(
    "grbl",
    re.compile(r"(?:>[^:]*:)?(?P<code>(?:error|ALARM):\d{1,3})"),
    ignore=(
        re.compile(r"ok"),
        re.compile(r"<[^<>]*>"),
        re.compile(r"\[[A-Za-z0-9]+:.*\]"),
        re.compile(r"Grbl \S+ \[.*\]"),
        re.compile(r"\$[A-Za-z0-9]*=.*"),
        re.compile(r">.*:ok"),
    ),
)

_CSV = LineParser(
    "csv",
    re.compile(r"(?P<machine>[^,]*[^,\s][^,]*)\s*,\s*(?P<code>[^,]*[^,\s][^,]*)(?:\s*,(?P<message>.*))?"),
)

PRESETS: dict[str, LineParser] = {"grbl": _GRBL, "csv": _CSV}


def make_parser(spec: str) -> LineParser:
    """A preset by name, or a parser over the regular expression `spec`."""
    if spec in PRESETS:
        return PRESETS[spec]
    try:
        pattern = re.compile(spec)
    except re.error as error:
        raise SerialError(
            f"serial parser {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a valid regular expression: {error}"
        ) from error
    return LineParser(spec, pattern)
