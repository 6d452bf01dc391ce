"""Which machine the kiosk serves: fixed in the settings, or chosen at the kiosk and kept.

A kiosk fixed with `kiosk.machine_id` always asks for that machine. Otherwise the operator
chooses one (an asset-tag scan such as `M:CV-01`, or F4 and the inventory list) and the
choice is written to the state directory, so it survives a restart until it is changed.
Every question the kiosk asks carries the machine, so the engine looks codes up for its
machine model and the audit row names it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from appliance import paths
from appliance.engine.client import Machine
from models.registry import write_durably


def chosen_file() -> Path:
    """Where the machine chosen at the kiosk is kept (`kiosk-machine.json` in the state dir)."""
    return paths.state_dir() / "kiosk-machine.json"


def load_chosen(path: Path) -> str:
    """The machine id chosen before, or "" (none, or an unreadable file: the operator chooses again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    value = data.get("machine_id") if isinstance(data, dict) else None
    return value.strip() if isinstance(value, str) else ""


def save_chosen(path: Path, machine_id: str) -> None:
    """Keep the choice durably (written, synced, renamed into place)."""
    write_durably(path, json.dumps({"machine_id": machine_id}).encode("utf-8"))


@dataclass(frozen=True)
class MachineContext:
    """The machine questions are asked for, and whether the settings fix it."""

    machine_id: str = ""
    fixed: bool = False

    def describe(self, machines: dict[str, Machine]) -> str:
        """`CV-01 · CV-200 · L1` (model and line from the inventory when it lists the machine)."""
        machine = machines.get(self.machine_id)
        parts = [self.machine_id]
        if machine is not None:
            parts += [p for p in (machine.machine_model, machine.line) if p]
        return " · ".join(parts)


def find_machine(machines: list[Machine], wanted: str) -> Machine | None:
    """The inventory's machine with this id (scanned tags are matched case-insensitively)."""
    for machine in machines:
        if machine.machine_id == wanted:
            return machine
    folded = wanted.casefold()
    return next((m for m in machines if m.machine_id.casefold() == folded), None)
