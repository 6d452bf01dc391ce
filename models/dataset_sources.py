"""Read what `shifu data build` is given: code tables, repair records and kiosk exports.

An argument may be
- a KB source folder (`codes/`, `records/`, optional `kb.toml` mapping): its code tables and
  repair records are read exactly as `shifu kb build` reads them (manuals are not needed);
- a single CSV/XLSX file of repair records (canonical columns, or renamed by `--mapping`);
- a folder written by `shifu export DEST` (`export.json`, `audit.jsonl`, `feedback.jsonl`;
  the `.csv` twins are read when the JSONL files are missing): operator feedback.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb.errors import SourceError
from kb.source.codes import check_collisions, read_codes, read_records
from kb.source.mapping import FileRule, load_mapping
from kb.source.tables import TABLE_SUFFIXES
from kb.types import CodeEntry, RepairRecord


@dataclass(frozen=True)
class FeedbackItem:
    """One operator verdict joined with the audited answer it judges."""

    feedback_id: str
    audit_id: str
    verdict: str
    operator: str
    created: str  # ISO date-time
    query: str
    lang: str
    machine_id: str
    code: str
    answer: dict[str, Any] | None  # the generated answer, or None when no model answered


@dataclass
class Sources:
    """Everything read from the arguments, with where each thing came from."""

    codes: list[CodeEntry] = field(default_factory=list)
    records: list[RepairRecord] = field(default_factory=list)
    feedback: list[FeedbackItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)


def is_export_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "export.json").exists() or (path / "feedback.jsonl").exists()
                              or (path / "feedback.csv").exists())


def read_sources(paths: list[Path], *, codes: list[Path] | None = None, mapping: Path | None = None) -> Sources:
    """Read every argument; code tables may also come from `codes` (files or source folders)."""
    out = Sources()
    for path in list(paths) + list(codes or []):
        if not path.exists():
            raise SourceError(f"{path} does not exist")
        if is_export_folder(path):
            _read_export(path, out)
        elif path.is_dir():
            _read_source_folder(path, mapping, out, codes_only=path in (codes or []))
        elif path.suffix.lower() in TABLE_SUFFIXES:
            if codes and path in codes:
                rule = _rule(mapping, path, "codes")
                entries = read_codes(path, path.name, rule, "en")
                check_collisions(entries)
                out.codes.extend(entries)
            else:
                records, warnings = read_records(path, path.name, _rule(mapping, path, "records"))
                out.records.extend(records)
                out.warnings.extend(warnings)
            out.read.append(str(path))
        else:
            raise SourceError(f"{path}: not a CSV/XLSX file, a KB source folder or a `shifu export` folder")
    return out


def _rule(mapping: Path | None, path: Path, role: str) -> FileRule | None:
    if mapping is None:
        return None
    rule = load_mapping(mapping, path.parent).rule_for(path.name)
    return rule if rule is not None and rule.role == role else None


def _read_source_folder(folder: Path, mapping_file: Path | None, out: Sources, *, codes_only: bool) -> None:
    mapping = load_mapping(mapping_file, folder)
    found = False
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in TABLE_SUFFIXES:
            continue
        role = mapping.role_for(relative)
        rule = mapping.rule_for(relative)
        if codes_only and role is None:
            role = "codes"  # a folder given with --codes holds code tables
        if role == "codes":
            entries = read_codes(path, path.name, rule, mapping.default_lang)
            check_collisions(entries)
            out.codes.extend(entries)
            found = True
        elif role == "records" and not codes_only:
            records, warnings = read_records(path, path.name, rule)
            out.records.extend(records)
            out.warnings.extend(warnings)
            found = True
        else:
            continue
        out.read.append(str(path))
    if not found:
        raise SourceError(f"{folder}: no code table or repair records found (expected codes/ and records/)")


def _load_rows(folder: Path, table: str) -> list[dict[str, Any]]:
    jsonl = folder / f"{table}.jsonl"
    if jsonl.exists():
        rows = []
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as error:
                raise SourceError(f"{jsonl} line {number}: not JSON ({error})") from error
        return rows
    csv_file = folder / f"{table}.csv"
    if csv_file.exists():
        with open(csv_file, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:  # JSON-valued columns are JSON text in the CSV twin
            if isinstance(row.get("answer"), str) and row["answer"]:
                try:
                    row["answer"] = json.loads(row["answer"])
                except ValueError:
                    row["answer"] = None
        return rows
    return []


def _read_export(folder: Path, out: Sources) -> None:
    audits = {str(row.get("id")): row for row in _load_rows(folder, "audit")}
    feedback = _load_rows(folder, "feedback")
    for row in feedback:
        audit = audits.get(str(row.get("audit_id")))
        if audit is None:
            out.warnings.append(f"{folder.name}: feedback {row.get('id')} refers to audit {row.get('audit_id')}, "
                                "which the export does not hold; skipped")
            continue
        answer = audit.get("answer")
        if isinstance(answer, str):
            try:
                answer = json.loads(answer) if answer else None
            except ValueError:
                answer = None
        out.feedback.append(FeedbackItem(
            feedback_id=str(row.get("id", "")), audit_id=str(row.get("audit_id", "")),
            verdict=str(row.get("verdict") or ""), operator=str(row.get("operator") or ""),
            created=str(row.get("created") or ""), query=str(audit.get("query") or ""),
            lang=str(audit.get("lang") or ""), machine_id=str(audit.get("machine_id") or ""),
            code=str(audit.get("code") or ""), answer=answer if isinstance(answer, dict) else None,
        ))
    out.read.append(str(folder))
