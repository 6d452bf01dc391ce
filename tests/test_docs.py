"""Every CLI command has help text and appears in the README."""

from __future__ import annotations

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


def test_every_command_has_help_and_is_documented() -> None:
    commands = walk(cli)
    assert len(commands) >= 6
    for path, command in commands:
        assert (command.help or "").strip(), f"`shifu {path}` has no help text"
        leaf = path.split()[-1]
        assert f"shifu {path}" in README or (" " in path and leaf in README), f"`shifu {path}` missing from README"
