"""A vendor's YAML or JSON code table -> flat rows, as a CSV would give them.

A table is a list of records (mappings). Where the list sits is the mapping's `root`, a dotted
path of keys (`data.errors`); without one, the document itself when it is a list, else its only
list-valued key (a vendor's `Errors:` list). Inside a record, nested keys become dotted column
names (`message.en`), a list of values becomes one value per line (`printers: [MK4, XL]` ->
"MK4\\nXL", which `kb.source.codes` splits like a ` | ` cell), and a list of records contributes
each record's values to the same dotted name (`steps: [{text: a}, {text: b}]` -> `steps.text`).

Scalars are kept as written: YAML is read without type resolution, so `0101` stays `0101`
(not the octal 65) and `1.10` stays `1.10`; JSON numbers keep their literal text too. A YAML
`~` or `null` is an empty cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kb.errors import SourceError

_NULLS = {"~", "null", "Null", "NULL"}


def _load(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SourceError(f"{path.name}: not UTF-8 text; save it as UTF-8") from error
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, parse_int=str, parse_float=str)
        except json.JSONDecodeError as error:
            raise SourceError(f"{path.name}: not valid JSON: {error}") from error
    import yaml

    try:
        # BaseLoader: every scalar stays the string it was written as (codes keep leading zeros).
        return yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as error:
        raise SourceError(f"{path.name}: not valid YAML: {error}") from error


def _find_list(document: Any, root: str | None, name: str) -> list[Any]:
    if root:
        node = document
        walked: list[str] = []
        for part in root.split("."):
            walked.append(part)
            if not isinstance(node, dict) or part not in node:
                raise SourceError(f"{name}: no key '{'.'.join(walked)}' (the mapping's root = \"{root}\")")
            node = node[part]
        if not isinstance(node, list):
            raise SourceError(f"{name}: '{root}' is not a list of records")
        return node
    if document is None:
        return []
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        lists = [key for key, value in document.items() if isinstance(value, list)]
        if len(lists) == 1:
            return list(document[lists[0]])
        found = ", ".join(str(k) for k in lists) or "none"
        raise SourceError(f"{name}: which list holds the records? give the mapping a `root` "
                          f"(list-valued keys: {found})")
    raise SourceError(f"{name}: expected a list of records")


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    return "" if text in _NULLS else text


def _flatten(value: Any, name: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(inner, f"{name}.{key}" if name else str(key), out)
    elif isinstance(value, list):
        if not value:
            out.setdefault(name, [])
        for item in value:
            _flatten(item, name, out)
    else:
        text = _scalar(value)
        values = out.setdefault(name, [])
        if text:
            values.append(text)


def flatten_record(record: dict[str, Any]) -> dict[str, str]:
    """One record as a row: dotted, lower-cased column names; list values one per line."""
    collected: dict[str, list[str]] = {}
    _flatten(record, "", collected)
    return {key.strip().lower(): "\n".join(values) for key, values in collected.items()}


def read_structured(path: Path, root: str | None = None) -> list[dict[str, str]]:
    """The records of a YAML or JSON table as rows; raise SourceError naming the file and record."""
    records = _find_list(_load(path), root, path.name)
    rows = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise SourceError(f"{path.name}: record {number} is not a mapping of keys to values")
        rows.append(flatten_record(record))
    return rows
