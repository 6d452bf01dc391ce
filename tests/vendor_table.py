"""A vendor's printer error-code table in its own YAML shape, written by the team for the tests.

The shape is the one 3D-printer makers publish: a top-level `Errors:` list; each record has a
code with the placeholder `XX` for the printer's display number (`XX101` is shown as `13101` on
an X1 and `17101` on an X2), a `printers` list (missing: every printer), a title, a text, and
here a nested `meta.severity`. The content is generated: 12 components x 8 faults = 96 vendor
codes, and each code applies to its models in one of six ways (every model by omission, all
four listed, a subset, one row per model with its own text, one model), which gives 288 codes
across four models. Every (component, fault) text is different, so equal texts are exactly the
copies of one record for several models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

PREFIXES = {"X1": "13", "X2": "17", "X3": "12", "X4": "20"}
MODELS = tuple(PREFIXES)

COMPONENTS = [
    ("heatbed", "Inspect the heatbed connector and the cable strain relief."),
    ("hotend", "Inspect the hotend heater cartridge and its crimp terminals."),
    ("heatbreak fan", "Clean the heatbreak fan blades and check that the fan spins freely."),
    ("print fan", "Remove lint from the print fan shroud and check the fan cable."),
    ("X axis motor", "Check the X belt tension and the motor pulley grub screw."),
    ("Y axis motor", "Check the Y belt tension and the idler pulley bearing."),
    ("Z axis motor", "Check the Z lead screw for debris and lubricate it."),
    ("extruder motor", "Check the extruder idler tension and the drive gear for ground filament."),
    ("filament sensor", "Clean the filament sensor window and reseat its cable."),
    ("load cell", "Check the load cell cable on the toolhead board."),
    ("power supply", "Measure the 24 V rail at the mainboard input terminals."),
    ("mainboard", "Reseat every connector on the mainboard with the power off."),
]

# (category digit, title suffix, first sentence, severity)
FAULTS = [
    ("1", "STALL", "The {c} stalled during a move.", "warning"),
    ("1", "HOMING FAILED", "Homing with the {c} did not finish.", "warning"),
    ("2", "OVERHEAT", "The {c} reported a temperature above its limit.", "critical"),
    ("2", "TEMPERATURE DROP", "The {c} lost temperature unexpectedly.", "warning"),
    ("3", "OVERCURRENT", "Overcurrent was detected on the {c} circuit.", "critical"),
    ("3", "DISCONNECTED", "The {c} does not respond and looks disconnected.", "warning"),
    ("5", "SELFTEST FAILED", "The selftest of the {c} failed.", "info"),
    ("5", "FIRMWARE MISMATCH", "The {c} runs firmware that does not match the mainboard.", "info"),
]

HINTS = {
    "X1": "On the X1, the cable runs through the left cable chain.",
    "X2": "On the X2, unplug the toolhead from the dock before you test it.",
    "X3": "On the X3, the part sits behind the rear cover held by four screws.",
    "X4": "On the X4, open the electronics box from below.",
}

MAPPING = """\
name = "Vendor printers"
default_lang = "en"

[[files]]
match = "error-codes.yaml"
role = "codes"
root = "Errors"
lang = "en"
steps_from = "description"
prefix_by_model = { "X1" = "13", "X2" = "17", "X3" = "12", "X4" = "20" }
[files.columns]
machine_model = "printers"
description = "text"
severity = "meta.severity"
"""


@dataclass(frozen=True)
class Row:
    """One vendor code as a model shows it: what the build must turn the table into."""

    code: str
    model: str
    title: str
    text: str
    vendor_code: str
    shared_with: tuple[str, ...] = field(default=())
    """The models whose row for this vendor code has the very same text (this one included)."""


def records() -> tuple[list[dict[str, object]], list[Row]]:
    """The YAML records, and every code they expand to."""
    out: list[dict[str, object]] = []
    rows: list[Row] = []
    counters: dict[str, int] = {}
    index = 0
    for category, fault, sentence, severity in FAULTS:
        for component, check in COMPONENTS:
            counters[category] = counters.get(category, 0) + 1
            vendor = f"XX{category}{counters[category]:02d}"
            title = f"{component.upper()} {fault}"
            text = f"{sentence.format(c=component)} {check}"
            base: dict[str, object] = {"code": vendor, "title": title, "text": text, "meta": {"severity": severity},
                                       "id": f"{component.upper().replace(' ', '_')}_{fault.replace(' ', '_')}"}
            way = index % 6
            index += 1
            if way == 3:  # one row per model, each with its own text
                for model in MODELS:
                    own = f"{text} {HINTS[model]}"
                    out.append({**base, "printers": [model], "text": own})
                    rows.append(Row(_code(vendor, model), model, title, own, vendor, (model,)))
                continue
            models = {0: MODELS, 1: MODELS, 2: ("X1", "X3"), 4: ("X2",), 5: ("X1", "X2", "X4")}[way]
            record = dict(base) if way == 0 else {**base, "printers": list(models)}
            out.append(record)
            rows.extend(Row(_code(vendor, m), m, title, text, vendor, tuple(models)) for m in models)
    return out, rows


def _code(vendor: str, model: str) -> str:
    return vendor.replace("XX", PREFIXES[model], 1)


def write_source(folder: Path) -> list[Row]:
    """A KB source folder holding the vendor's table and the mapping for it; the expected codes."""
    folder.mkdir(parents=True, exist_ok=True)
    data, rows = records()
    header = "# Error codes of the X-series printers. Printer codes: X1 13xxx, X2 17xxx, X3 12xxx, X4 20xxx.\n"
    (folder / "error-codes.yaml").write_text(
        header + yaml.safe_dump({"Errors": data}, sort_keys=False, allow_unicode=True, width=200), encoding="utf-8")
    (folder / "kb.toml").write_text(MAPPING, encoding="utf-8")
    return rows
