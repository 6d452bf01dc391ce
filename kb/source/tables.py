"""Read code tables (CSV, XLSX, YAML, JSON) into rows keyed by lower-case, trimmed column names.

CSV and XLSX: the header row names the columns. YAML and JSON (a vendor's own table): a list of
records, found at the mapping's dotted `root` path (or the document itself when it is a list, or
its only list); nested keys become dotted column names (`message.en`), and a list of values
becomes one value per line, which is how a cell lists several steps or machine models
(`kb.source.flatten`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from kb.errors import SourceError
from kb.source.flatten import read_structured

Row = dict[str, str]
STRUCTURED_SUFFIXES = {".yaml", ".yml", ".json"}
TABLE_SUFFIXES = {".csv", ".xlsx", ".xlsm"} | STRUCTURED_SUFFIXES


def _clean_header(names: list[str], path: Path) -> list[str]:
    cleaned = [(name or "").strip().lower() for name in names]
    seen: set[str] = set()
    for name in cleaned:
        if name and name in seen:
            raise SourceError(f"{path.name}: column '{name}' appears twice in the header")
        seen.add(name)
    return cleaned


def _read_csv(path: Path) -> list[Row]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp950")  # Big5 exports from Taiwanese Excel
        except UnicodeDecodeError as error:
            raise SourceError(
                f"{path.name}: not UTF-8 or Big5 text; save it as CSV UTF-8"
            ) from error
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    names = _clean_header(header, path)
    rows: list[Row] = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        rows.append({name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(names) if name})
    return rows


def _read_xlsx(path: Path, sheet: str | None) -> list[Row]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for broken files
        raise SourceError(f"{path.name}: cannot open workbook: {error}") from error
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise SourceError(f"{path.name}: no sheet named '{sheet}' (has {book.sheetnames})")
        ws = book[sheet] if sheet else book.worksheets[0]
        values = ws.iter_rows(values_only=True)
        header = next(values, None)
        if header is None:
            return []
        names = _clean_header([str(v) if v is not None else "" for v in header], path)
        rows: list[Row] = []
        for cells in values:
            texts = ["" if v is None else _cell_text(v) for v in cells]
            if not any(t for t in texts):
                continue
            rows.append({n: (texts[i] if i < len(texts) else "") for i, n in enumerate(names) if n})
        return rows
    finally:
        book.close()


def _cell_text(value: object) -> str:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_table(path: Path, sheet: str | None = None, root: str | None = None) -> list[Row]:
    """Rows of a CSV, XLSX, YAML or JSON file; column names lower-cased and trimmed."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix in {".xlsx", ".xlsm"}:
        return _read_xlsx(path, sheet)
    if suffix in STRUCTURED_SUFFIXES:
        return read_structured(path, root)
    raise SourceError(f"{path.name}: tables must be .csv, .xlsx, .yaml or .json")


def row_label(path: Path, index: int) -> str:
    """How an error names the index-th row (0-based): the spreadsheet row, or the record number."""
    if path.suffix.lower() in STRUCTURED_SUFFIXES:
        return f"record {index + 1}"
    return f"row {index + 2}"  # row 1 is the header


def rename(rows: list[Row], columns: dict[str, str]) -> list[Row]:
    """Apply a mapping's `canonical = "Header in file"` renames."""
    if not columns:
        return rows
    lookup = {source.strip().lower(): canonical.strip().lower() for canonical, source in columns.items()}
    return [{lookup.get(key, key): value for key, value in row.items()} for row in rows]
