"""Code tables and repair records -> typed entries, validated with clear messages."""

from __future__ import annotations

import re
from pathlib import Path

from kb.errors import SourceError
from kb.normalize import code_key
from kb.source.mapping import FileRule
from kb.source.tables import Row, read_table, rename, row_label
from kb.types import CodeEntry, RepairRecord

SEVERITIES = ("info", "warning", "critical")
RESULTS = ("fixed", "not_fixed", "escalated")
LANGS = ("zh-TW", "en")
_NUMBERING = re.compile(r"^\s*(?:\d+[.)、]|[-*•])\s*")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


def split_items(text: str) -> tuple[str, ...]:
    """Split a multi-item cell (one per line, or ` | `) and strip `1.` numbering."""
    if not text:
        return ()
    parts = re.split(r"\r?\n|\s\|\s", text)
    items = (_NUMBERING.sub("", part).strip() for part in parts)
    return tuple(item for item in items if item)


def sentences(text: str) -> tuple[str, ...]:
    """Split a description into sentences (for steps derived from a description)."""
    return tuple(s.strip() for s in _SENTENCE.split(text.strip()) if s.strip())


def _lang(value: str, default: str, where: str) -> str:
    if not value:
        return default
    for lang in LANGS:
        if value.strip().lower() == lang.lower():
            return lang
    if value.strip().lower() in {"zh", "zh-tw", "zh_tw", "tw", "中文"}:
        return "zh-TW"
    raise SourceError(f"{where}: lang '{value}' is not one of {', '.join(LANGS)}")


def split_models(text: str) -> tuple[str, ...]:
    """The machine models a row applies to: one per line (a YAML/JSON list) or separated by ` | `."""
    parts = (part.strip() for part in re.split(r"\r?\n|\s\|\s", text or ""))
    return tuple(dict.fromkeys(part for part in parts if part))


def model_code(raw_code: str, model: str, rule: FileRule, where: str) -> str:
    """The code as `model` displays it: the rule's prefix, and the model's part for the placeholder."""
    if not rule.prefix_by_model or rule.placeholder not in raw_code:
        return f"{rule.prefix}{raw_code}"
    part = rule.prefix_by_model.get(model)
    if part is None:  # model names are matched as written, then regardless of case
        part = next((v for k, v in rule.prefix_by_model.items() if k.lower() == model.lower()), None)
    if part is None:
        known = ", ".join(rule.prefix_by_model)
        raise SourceError(f"{where}: code '{raw_code}' has the model-dependent part '{rule.placeholder}' "
                          f"but prefix_by_model has no entry for model '{model or '(none)'}' (it has {known})")
    return f"{rule.prefix}{raw_code.replace(rule.placeholder, part, 1)}"


def read_codes(path: Path, relative: str, rule: FileRule | None, default_lang: str) -> list[CodeEntry]:
    """Read one code table (one entry per row and machine model); raise SourceError naming file, row and column."""
    rule = rule or FileRule(match=relative, role="codes")
    rows = rename(read_table(path, rule.sheet, rule.root), rule.columns)
    entries: list[CodeEntry] = []
    for index, row in enumerate(rows):
        entries.extend(_code_entries(row, rule, relative, f"{relative} {row_label(path, index)}", default_lang))
    return entries


def _code_entries(row: Row, rule: FileRule, relative: str, where: str, default_lang: str) -> list[CodeEntry]:
    """One row's entries: a row that applies to several models is stored once per model."""
    raw_code = row.get("code", "")
    title = row.get("title", "")
    if not raw_code:
        raise SourceError(f"{where}: column 'code' is empty or missing")
    if not title:
        raise SourceError(f"{where}: column 'title' is empty or missing")
    description = row.get("description", "")
    steps = split_items(row.get("steps", ""))
    if not steps and rule.steps_from:
        steps = sentences(row.get(rule.steps_from, ""))
    if not steps:
        raise SourceError(
            f"{where}: column 'steps' is empty (or give the table a `steps_from` column in the mapping)"
        )
    severity = (row.get("severity") or rule.severity or "warning").strip().lower()
    if severity not in SEVERITIES:
        raise SourceError(f"{where}: severity '{severity}' is not one of {', '.join(SEVERITIES)}")
    lang = _lang(row.get("lang", ""), rule.lang or default_lang, where)
    models = split_models(row.get("machine_model", "")) or ((rule.machine_model,) if rule.machine_model else ())
    if not models and rule.prefix_by_model and rule.placeholder in raw_code:
        # A model-dependent code on a row for every model: one row per model the mapping knows.
        models = tuple(rule.prefix_by_model)
    entries = []
    for model in models or ("",):
        code = model_code(raw_code, model, rule, where)
        key = code_key(code)
        if not key:
            raise SourceError(f"{where}: code '{code}' has no letters or digits")
        entries.append(CodeEntry(
            code=code,
            key=key,
            title=title,
            steps=steps,
            safety=split_items(row.get("safety", "")),
            severity=severity,
            machine_model=model,
            lang=lang,
            description=description,
            source=relative,
        ))
    return entries


def check_collisions(entries: list[CodeEntry]) -> None:
    """Two different codes with one key in one table fail the build, both named."""
    seen: dict[tuple[str, str, str, str], CodeEntry] = {}
    for entry in entries:
        ident = (entry.source, entry.key, entry.machine_model, entry.lang)
        other = seen.get(ident)
        if other is not None:
            what = "collide after normalisation" if other.code != entry.code else "are duplicated"
            raise SourceError(
                f"{entry.source}: codes '{other.code}' and '{entry.code}' {what} "
                f"(key {entry.key}, model '{entry.machine_model or '*'}', {entry.lang}); "
                "rename one of them in the table"
            )
        seen[ident] = entry


def read_records(path: Path, relative: str, rule: FileRule | None) -> tuple[list[RepairRecord], list[str]]:
    """Repair records and a list of skipped-row warnings (bad rows are skipped, not fatal)."""
    rule = rule or FileRule(match=relative, role="records")
    rows = rename(read_table(path, rule.sheet, rule.root), rule.columns)
    records: list[RepairRecord] = []
    warnings: list[str] = []
    for index, row in enumerate(rows):
        where = f"{relative} {row_label(path, index)}"
        code = row.get("code", "")
        if not code:
            warnings.append(f"{where}: no code, skipped")
            continue
        result = (row.get("result") or "").strip().lower().replace(" ", "_")
        if result and result not in RESULTS:
            warnings.append(f"{where}: result '{result}' unknown, kept as given")
        duration = row.get("duration_min", "")
        machine_model = row.get("machine_model", "") or (rule.machine_model or "")
        try:
            full_code = model_code(code, machine_model, rule, where)
        except SourceError as error:
            warnings.append(f"{error}; skipped")
            continue
        records.append(
            RepairRecord(
                date=row.get("date", ""),
                machine_id=row.get("machine_id", ""),
                machine_model=machine_model,
                code=full_code,
                symptom=row.get("symptom", ""),
                action=row.get("action", ""),
                parts=row.get("parts", ""),
                result=result,
                technician=row.get("technician", ""),
                duration_min=int(float(duration)) if _is_number(duration) else None,
            )
        )
    return records, warnings


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
