"""One text, one passage: code rows stored once per machine model are shown once.

A vendor's table repeats a row's text for each model it applies to (`printers: [MK4, XL]`,
or the same text under each model's own code, `13201` and `17201`). The build stores one chunk
per row and model, each with its model and a `variant` shared by rows of identical text
(kb.build). In search results:
- the machine model unknown: the best-ranked copy stands for the others, and its
  `machine_models` lists every model the text applies to (empty when a row for every model
  has it too);
- the machine model known: other models' rows are left out, so only its row (or a row for
  every model) is shown, listing that model.
Manual passages have no variant and pass unchanged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Kept:
    """A chunk that stays in the results, with the models its text applies to."""

    id: str
    machine_models: tuple[str, ...]


def has_variants(conn: sqlite3.Connection) -> bool:
    """Whether this KB version records chunk models (versions built before m002 do not)."""
    return "variant" in {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}


def _rows(conn: sqlite3.Connection, column: str, values: list[str]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for start in range(0, len(values), 500):  # SQLite's limit on bound parameters
        part = values[start:start + 500]
        marks = ",".join("?" for _ in part)
        rows.extend(conn.execute(
            f"SELECT id, machine_model, variant FROM chunks WHERE {column} IN ({marks})",  # noqa: S608
            part,
        ).fetchall())
    return rows


def collapse(conn: sqlite3.Connection, ranked: list[str], limit: int, machine_model: str = "") -> list[Kept]:
    """The first `limit` distinct texts of `ranked` (ids best first), for this machine model if known."""
    if not ranked:
        return []
    info = {row[0]: (row[1], row[2]) for row in _rows(conn, "id", ranked)}
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    for ident in ranked:
        model, variant = info.get(ident, ("", ""))
        if machine_model and model and model != machine_model:
            continue  # another model's row
        if variant:
            if variant in seen:
                continue
            seen.add(variant)
        kept.append((ident, variant))
        if len(kept) >= limit:
            break
    models: dict[str, set[str]] = {}
    variants = [variant for _, variant in kept if variant]
    for _, model, variant in _rows(conn, "variant", variants) if variants else []:
        models.setdefault(variant, set()).add(model)
    out = []
    for ident, variant in kept:
        applies = models.get(variant, set())
        if not variant or "" in applies:
            names: tuple[str, ...] = ()  # a manual, or a text that a row for every model holds too
        elif machine_model:
            names = (machine_model,)
        else:
            names = tuple(sorted(applies, key=str.lower))
        out.append(Kept(ident, names))
    return out
