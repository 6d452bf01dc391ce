"""Build a new knowledge-base version from one or more source folders.

Steps: read every source (with its mapping) -> write a staged SQLite database ->
embed new chunks (vectors of unchanged chunks are copied from the current version) ->
build the vector index -> self-test -> mark complete -> switch `current` atomically.
A failure at any step leaves the active version untouched.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb.embed import Embedder
from kb.errors import KBError, SourceError
from kb.ingest import MANUAL_SUFFIXES, read_sections
from kb.ingest.chunking import chunk_id, chunk_sections, detect_lang
from kb.search.dense import build_index
from kb.search.terms import index_terms
from kb.source.codes import check_collisions, read_codes, read_records
from kb.source.mapping import Mapping, load_mapping
from kb.source.tables import STRUCTURED_SUFFIXES, TABLE_SUFFIXES, read_table, rename
from kb.store.migrate import connect, migrate
from kb.store.schema import MIGRATIONS
from kb.types import Chunk, CodeEntry, RepairRecord
from kb.versions import COMPLETE_MARK, DB_NAME, VersionStore

Progress = Callable[[str], None]


@dataclass
class SourceSpec:
    """One source folder and its optional mapping file."""

    folder: Path
    mapping: Path | None = None


@dataclass
class BuildReport:
    version: int
    codes: int = 0
    records: int = 0
    machines: int = 0
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    activated: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class _Collected:
    codes: list[CodeEntry] = field(default_factory=list)
    records: list[RepairRecord] = field(default_factory=list)
    machines: dict[str, dict[str, str]] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    documents: list[dict[str, object]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _collect_source(spec: SourceSpec, out: _Collected, prefix: str) -> None:
    folder = spec.folder
    if not folder.is_dir():
        raise SourceError(f"source folder {folder} does not exist")
    mapping: Mapping = load_mapping(spec.mapping, folder)
    out.names.append(mapping.name or folder.name)
    for path in _files(folder):
        relative = path.relative_to(folder).as_posix()
        if relative == "kb.toml" or (spec.mapping and path.resolve() == spec.mapping.resolve()):
            continue
        role = mapping.role_for(relative)
        rule = mapping.rule_for(relative)
        shown = f"{prefix}{path.name}"
        if role is None or role == "ignore":
            if role is None:
                out.warnings.append(f"{relative}: no role (not in codes/, records/, machines/, manuals/), ignored")
            continue
        suffix = path.suffix.lower()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if role == "codes":
            entries = read_codes(path, shown, rule, mapping.default_lang)
            check_collisions(entries)
            out.codes.extend(entries)
            out.chunks.extend(_code_chunks(entries))
            out.documents.append({"source": shown, "sha256": sha, "role": role, "lang": "", "chunks": len(entries)})
        elif role == "records":
            records, warnings = read_records(path, shown, rule)
            out.records.extend(records)
            out.warnings.extend(warnings)
            out.documents.append({"source": shown, "sha256": sha, "role": role, "lang": "", "chunks": 0})
        elif role == "machines":
            rows = rename(read_table(path, rule.sheet if rule else None, rule.root if rule else None),
                          rule.columns if rule else {})
            for row in rows:
                if row.get("machine_id"):
                    out.machines[row["machine_id"]] = row
            out.documents.append({"source": shown, "sha256": sha, "role": role, "lang": "", "chunks": 0})
        elif role == "manual":
            if suffix in STRUCTURED_SUFFIXES and rule is None:
                # A YAML/JSON file among the manuals is rarely a table (a config, a data export):
                # only a mapping rule makes it one, as it was before YAML tables were read.
                out.warnings.append(f"{relative}: unsupported manual format, ignored")
                continue
            if suffix in TABLE_SUFFIXES:
                chunks = _table_manual_chunks(path, shown, rule, mapping.default_lang)
            elif suffix in MANUAL_SUFFIXES:
                sections = read_sections(path, shown)
                default = (rule.lang if rule and rule.lang else None) or mapping.default_lang
                chunks = chunk_sections(sections, shown, default)
            else:
                out.warnings.append(f"{relative}: unsupported manual format, ignored")
                continue
            if not chunks:
                out.warnings.append(f"{relative}: no text found (a scanned PDF needs OCR first); ignored")
            out.chunks.extend(chunks)
            lang = detect_lang(" ".join(c.text for c in chunks[:20]), mapping.default_lang)
            out.documents.append({"source": shown, "sha256": sha, "role": role, "lang": lang, "chunks": len(chunks)})


def _variant(entry: CodeEntry) -> str:
    """Rows whose text is the same (for other models, under other model-dependent codes) share this."""
    text = json.dumps([entry.lang, entry.title, entry.description, list(entry.steps), list(entry.safety)],
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _code_chunks(entries: list[CodeEntry]) -> list[Chunk]:
    """Code-table rows as searchable chunks, so a symptom can lead to a code (one per row and model)."""
    chunks = []
    for entry in entries:
        section = f"{entry.code} {entry.title}" + (f" ({entry.machine_model})" if entry.machine_model else "")
        lines = [f"{entry.code} {entry.title}"]
        if entry.description:
            lines.append(entry.description)
        lines.extend(step for step in entry.steps if step not in entry.description)
        text = "\n".join(lines)
        chunks.append(
            Chunk(
                id=chunk_id(entry.source, section, text),
                source=entry.source,
                section=section,
                text=text,
                page=None,
                lang=entry.lang,
                kind="code",
                machine_model=entry.machine_model,
                variant=_variant(entry),
            )
        )
    return chunks


def _table_manual_chunks(path: Path, shown: str, rule: object, default_lang: str) -> list[Chunk]:
    """A table given the manual role: one chunk per row, `column: value` lines."""
    from kb.source.mapping import FileRule

    assert rule is None or isinstance(rule, FileRule)
    rows = rename(read_table(path, rule.sheet if rule else None, rule.root if rule else None),
                  rule.columns if rule else {})
    chunks = []
    for row in rows:
        values = [v for v in row.values() if v]
        if not values:
            continue
        section = f"{path.stem} > {values[0]}" + (f" {values[1]}" if len(values) > 1 else "")
        text = "\n".join(f"{k}: {v}" for k, v in row.items() if v)
        lang = (rule.lang if rule and rule.lang else None) or detect_lang(text, default_lang)
        chunks.append(Chunk(id=chunk_id(shown, section, text), source=shown, section=section,
                            text=text, page=None, lang=lang, kind="table"))
    return chunks


def collect(sources: list[SourceSpec]) -> _Collected:
    """Read every source; file names get a `folder/` prefix only when several sources are built."""
    out = _Collected()
    for spec in sources:
        prefix = f"{spec.folder.name}/" if len(sources) > 1 else ""
        _collect_source(spec, out, prefix)
    if not out.codes and not out.chunks:
        raise SourceError("the sources hold no code table and no manual; nothing to build")
    unique: dict[str, Chunk] = {}
    for chunk in out.chunks:
        unique.setdefault(chunk.id, chunk)
    out.chunks = list(unique.values())
    return out


def _write_db(db_path: Path, data: _Collected, version: int, embed_model: str) -> None:
    db = connect(db_path, synchronous="FULL")
    migrate(db, MIGRATIONS)
    with db.conn:
        db.table("codes").insert_all(
            {
                "code": c.code, "key": c.key, "title": c.title, "steps": json.dumps(list(c.steps), ensure_ascii=False),
                "safety": json.dumps(list(c.safety), ensure_ascii=False), "severity": c.severity,
                "machine_model": c.machine_model, "lang": c.lang, "description": c.description, "source": c.source,
            }
            for c in data.codes
        )
        from kb.normalize import code_key

        db.table("records").insert_all(
            {**r.__dict__, "key": code_key(r.code)} for r in data.records
        )
        machines = dict(data.machines)
        for record in data.records:  # without a machines table, the inventory comes from the records
            if record.machine_id and record.machine_id not in machines:
                machines[record.machine_id] = {"machine_id": record.machine_id, "machine_model": record.machine_model}
        db.table("machines").insert_all(
            {"machine_id": m["machine_id"], "machine_model": m.get("machine_model", ""),
             "line": m.get("line", ""), "location": m.get("location", "")}
            for m in machines.values()
        )
        db.table("documents").insert_all(data.documents)
        db.table("chunks").insert_all(
            {"id": c.id, "source": c.source, "section": c.section, "page": c.page, "lang": c.lang,
             "kind": c.kind, "ordinal": c.ordinal, "text": c.text, "machine_model": c.machine_model,
             "variant": c.variant}
            for c in data.chunks
        )
        for chunk in data.chunks:
            body = f"{chunk.section}\n{chunk.text}"
            db.execute("INSERT INTO chunks_tri (chunk_id, body) VALUES (?, ?)", [chunk.id, body])
            db.execute("INSERT INTO chunks_words (chunk_id, body) VALUES (?, ?)", [chunk.id, index_terms(body)])
        from kb.search.calibrate import calibrate

        calibration = calibrate(db.conn)
        meta = {
            "version": str(version), "name": " + ".join(data.names), "embedding_model": embed_model,
            "codes": str(len(data.codes)), "chunks": str(len(data.chunks)),
            "fts_threshold": str(calibration.threshold),
            "fts_calibration": f"p10 of {calibration.positives} own questions {calibration.positive_p10}, "
                               f"off-domain max {calibration.negative_max}",
        }
        db.table("meta").insert_all(({"key": k, "value": v} for k, v in meta.items()), replace=True)
    db.conn.close()


def _embed(
    db_path: Path,
    previous_db: Path | None,
    embedder: Embedder,
    progress: Progress,
    precomputed: dict[str, np.ndarray] | None = None,
) -> tuple[int, int]:
    """Fill the embeddings table; copy vectors of unchanged chunks from the previous version."""
    db = connect(db_path, synchronous="FULL")
    ids = [row[0] for row in db.execute("SELECT id FROM chunks ORDER BY rowid").fetchall()]
    reused = 0
    if previous_db is not None and previous_db.exists():
        db.execute("ATTACH DATABASE ? AS prev", [f"file:{previous_db}?mode=ro"])
        with db.conn:
            cursor = db.execute(
                "INSERT OR IGNORE INTO embeddings SELECT e.chunk_id, e.model, e.dim, e.vector "
                "FROM prev.embeddings e JOIN chunks c ON c.id = e.chunk_id WHERE e.model = ?",
                [embedder.model_id],
            )
            reused = cursor.rowcount
        db.execute("DETACH DATABASE prev")
    have = {row[0] for row in db.execute("SELECT chunk_id FROM embeddings WHERE model = ?", [embedder.model_id])}
    todo = [i for i in ids if i not in have]
    if precomputed and todo:
        # Vectors shipped in a bundle, keyed by chunk id, for this embedding model.
        given = [(i, precomputed[i]) for i in todo if i in precomputed]
        dim = embedder.dim or (given[0][1].shape[0] if given else 0)
        given = [(i, v) for i, v in given if v.shape[0] == dim]
        with db.conn:
            db.conn.executemany(
                "INSERT INTO embeddings (chunk_id, model, dim, vector) VALUES (?, ?, ?, ?)",
                [(i, embedder.model_id, int(v.shape[0]), v.astype(np.float32).tobytes()) for i, v in given],
            )
        reused += len(given)
        done = {i for i, _ in given}
        todo = [i for i in todo if i not in done]
    if todo:
        progress(f"embedding {len(todo)} new chunks ({reused} unchanged)")
        texts = {
            row[0]: f"{row[1]}\n{row[2]}"
            for row in db.execute("SELECT id, section, text FROM chunks").fetchall()
        }
        vectors = embedder.embed([texts[i] for i in todo], progress=len(todo) > 200)
        with db.conn:
            db.conn.executemany(
                "INSERT INTO embeddings (chunk_id, model, dim, vector) VALUES (?, ?, ?, ?)",
                [(i, embedder.model_id, int(v.shape[0]), v.astype(np.float32).tobytes()) for i, v in zip(todo, vectors, strict=True)],
            )
    db.conn.close()
    return len(todo), reused


def build_dense_index(db_path: Path, index_dir: Path, model_id: str) -> int:
    """(Re)build the Chroma directory from the embeddings stored in SQLite."""
    db = connect(db_path, readonly=True)
    rows = db.execute(
        "SELECT chunk_id, dim, vector FROM embeddings WHERE model = ? ORDER BY chunk_id", [model_id]
    ).fetchall()
    db.conn.close()
    if not rows:
        return 0
    vectors = np.stack([np.frombuffer(blob, dtype=np.float32, count=dim) for _, dim, blob in rows])
    build_index(index_dir, [r[0] for r in rows], vectors)
    return len(rows)


def build(
    sources: list[SourceSpec],
    store: VersionStore,
    embedder: Embedder | None,
    *,
    activate: bool = True,
    self_test: Callable[[Path], None] | None = None,
    progress: Progress = lambda _msg: None,
    precomputed: dict[str, np.ndarray] | None = None,
) -> BuildReport:
    """Build, self-test and (optionally) activate a new version; return the report.

    `precomputed` maps chunk ids to vectors of `embedder`'s model (shipped in a bundle), so
    those chunks are not embedded again.
    """
    started = time.monotonic()
    data = collect(sources)
    store.versions_dir.mkdir(parents=True, exist_ok=True)
    version = store.next_number()
    staging = store.staging_path(version)
    store.discard(staging)
    staging.mkdir(parents=True)
    report = BuildReport(version=version, warnings=data.warnings)
    try:
        progress(f"version {version}: {len(data.codes)} code rows, {len(data.records)} records, {len(data.chunks)} chunks")
        db_path = staging / DB_NAME
        _write_db(db_path, data, version, embedder.model_id if embedder else "")
        if embedder is not None:
            current = store.current()
            previous_db = store.path(current) / DB_NAME if current is not None else None
            report.embedded, report.reused = _embed(db_path, previous_db, embedder, progress, precomputed)
            progress("building the vector index")
            build_dense_index(db_path, staging / "chroma", embedder.model_id)
        from kb.selftest import self_test as default_test

        if self_test is not None:
            self_test(staging)
        else:
            default_test(staging, sources)
        (staging / COMPLETE_MARK).write_text(json.dumps({"version": version}))
        store.publish(staging, version)  # rename, then fsync the folder: the rename survives a power cut
    except BaseException:
        store.discard(staging)
        raise
    report.codes = len(data.codes)
    report.records = len(data.records)
    report.machines = len(data.machines)
    report.documents = len(data.documents)
    report.chunks = len(data.chunks)
    if activate:
        store.activate(version)
        report.activated = True
    report.seconds = round(time.monotonic() - started, 2)
    return report


def require(condition: bool, message: str) -> None:
    if not condition:
        raise KBError(message)
