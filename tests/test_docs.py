"""Every CLI command has help text and appears, by its full name, in the README's command table."""

from __future__ import annotations

import re
from pathlib import Path

import click

from appliance.cli.main import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(walk(command, path + " "))
    return found


def command_table(readme: str) -> list[str]:
    """The `shifu ...` spans in the rows of the README's command table (any column)."""
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [" ".join(span.split()) for row in rows for span in re.findall(r"`(shifu [^`]+)`", row)]


def documented(path: str, spans: list[str]) -> bool:
    """`shifu kb rollback` counts for `shifu kb rollback [V]`, not for `shifu kb versions`."""
    full = f"shifu {path}"
    return any(span == full or span.startswith(full + " ") for span in spans)


def test_every_command_has_help_and_is_documented() -> None:
    commands = walk(cli)
    assert len(commands) >= 6
    spans = command_table(README)
    for path, command in commands:
        assert (command.help or "").strip(), f"`shifu {path}` has no help text"
    missing = [f"shifu {path}" for path, _ in commands if not documented(path, spans)]
    assert not missing, f"not in the README's command table: {missing}"


def test_a_command_named_only_elsewhere_is_not_documented() -> None:
    """The last word, or the command outside the table, does not count."""
    spans = command_table("# x\n\nrun `shifu kb rollback`\n\n## Commands\n\n| command | what |\n| --- | --- |\n"
                          "| `shifu kb versions` | list; then rollback |\n| `shifu serial [--port DEV]` | listen |\n\n"
                          "## Next\n\n| `shifu kb rollback` | elsewhere |\n")
    assert spans == ["shifu kb versions", "shifu serial [--port DEV]"]
    assert documented("kb versions", spans) and documented("serial", spans) and documented("kb", spans)
    assert not documented("kb rollback", spans) and not documented("serve", spans)
