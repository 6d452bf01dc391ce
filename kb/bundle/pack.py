"""Build and sign a bundle on the engineer's PC.

The payload is written first and `manifest.json` + `manifest.sig` last, so a bundle whose
writing was interrupted has no valid signature and is refused by every appliance.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kb.build import SourceSpec, collect
from kb.bundle.embeddings import IDS_PATH, VECTORS_PATH, chunk_text, vectors_from_db, write_embeddings
from kb.bundle.limits import Limits
from kb.bundle.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    SIGNATURE,
    EmbeddingsInfo,
    FileEntry,
    KBPayload,
    Kind,
    Manifest,
    ModelPayload,
    SourceEntry,
    check_path,
    now_iso,
    parse_manifest,
)
from kb.bundle.sign import key_id, load_private, next_sequence, sign
from kb.embed import Embedder
from kb.errors import BundleError

Progress = Callable[[str], None]


@dataclass
class ModelFile:
    """A GGUF file to ship, with the registry fields the appliance needs."""

    file: Path
    id: str
    kind: str = "base"  # base | adapter
    base_sha256: str = ""
    n_ctx: int = 2048
    chat_template: str = "chatml"
    quantization: str = ""
    architecture: str = ""
    activate: bool = False


@dataclass
class BundlePlan:
    sources: list[SourceSpec] = field(default_factory=list)
    models: list[ModelFile] = field(default_factory=list)
    label: str = ""
    model_label: str = ""
    revoke: list[str] = field(default_factory=list)
    note: str = ""
    software: Path | None = None  # a folder copied to `software/`


def _copy_tree(source: Path, dest: Path) -> None:
    """Copy the files kb.build would read (hidden files are skipped, links refused)."""
    for folder, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if name.startswith("."):
                continue
            if path.is_symlink() or not path.is_file():
                raise BundleError(f"{path} is a link or special file; bundles may hold only regular files")
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _embed(root: Path, specs: list[SourceSpec], embedder: Embedder, reuse_db: Path | None,
           progress: Progress) -> EmbeddingsInfo:
    chunks = collect(specs).chunks
    ids = [c.id for c in chunks]
    known = vectors_from_db(reuse_db, embedder.model_id, ids) if reuse_db is not None else {}
    todo = [c for c in chunks if c.id not in known]
    progress(f"vectors: {len(known)} reused, {len(todo)} to embed")
    if todo:
        rows = embedder.embed([chunk_text(c) for c in todo], progress=len(todo) > 200)
        known.update({c.id: row for c, row in zip(todo, rows, strict=True)})
    matrix = np.stack([known[i] for i in ids]).astype(np.float32) if ids else np.zeros((0, 1), np.float32)
    write_embeddings(root, ids, matrix)
    return EmbeddingsInfo(model=embedder.model_id, dim=int(matrix.shape[1]), count=len(ids),
                          ids=IDS_PATH, vectors=VECTORS_PATH)


def build_bundle(
    plan: BundlePlan,
    out: Path,
    key_file: Path,
    *,
    passphrase: bytes | None = None,
    sequence: int | None = None,
    embedder: Embedder | None = None,
    reuse_db: Path | None = None,
    limits: Limits | None = None,
    progress: Progress = lambda _msg: None,
) -> Manifest:
    """Write a signed bundle folder at `out` (which must not exist or be empty)."""
    limits = limits or Limits()
    private = load_private(key_file, passphrase)  # fail before writing anything
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} is not empty; give a new folder for the bundle")
    out.mkdir(parents=True, exist_ok=True)
    kind = _kind(plan)
    kb_payload = None
    embeddings = None
    if plan.sources:
        entries, specs = [], []
        names = [s.folder.resolve().name for s in plan.sources]
        if len(set(names)) != len(names):
            raise BundleError(f"source folders must have distinct names (got {names})")
        for n, spec in enumerate(plan.sources):
            folder = f"kb-source/{names[n]}"
            progress(f"copying {spec.folder} -> {folder}")
            _copy_tree(spec.folder, out / folder)
            mapping = None
            if spec.mapping is not None:
                mapping = f"mappings/{n}-{spec.mapping.name}"
                (out / "mappings").mkdir(exist_ok=True)
                shutil.copyfile(spec.mapping, out / mapping)
            entries.append(SourceEntry(folder=folder, mapping=mapping))
            specs.append(SourceSpec(out / folder, out / mapping if mapping else None))
        kb_payload = KBPayload(sources=entries)
        collect(specs)  # the appliance must be able to read what we ship: fail here, not there
        if embedder is not None:
            embeddings = _embed(out, specs, embedder, reuse_db, progress)
    models = []
    for model in plan.models:
        target = f"models/{model.file.name}"
        progress(f"copying {model.file.name}")
        (out / "models").mkdir(exist_ok=True)
        shutil.copyfile(model.file, out / target)
        models.append(ModelPayload(id=model.id, kind=model.kind, path=target, base_sha256=model.base_sha256,  # type: ignore[arg-type]
                                   n_ctx=model.n_ctx, chat_template=model.chat_template,
                                   quantization=model.quantization, architecture=model.architecture,
                                   activate=model.activate))
    if plan.software is not None:
        _copy_tree(plan.software, out / "software")
    progress("hashing files")
    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out).as_posix()
        check_path(relative, limits)
        files.append(FileEntry(path=relative, size=path.stat().st_size, sha256=_sha256(path)))
    number = next_sequence(key_file, sequence)
    manifest = Manifest(
        format_version=FORMAT_VERSION, kind=kind, kb_version=plan.label, model_version=plan.model_label,
        sequence=number, key_id=key_id(private.public_key()), created=now_iso(), files=files, kb=kb_payload,
        embeddings=embeddings, models=models, revoke=list(plan.revoke), note=plan.note,
    )
    raw = manifest.to_bytes()
    parse_manifest(raw, limits)  # the same checks the appliance runs
    (out / MANIFEST).write_bytes(raw)
    (out / SIGNATURE).write_bytes(sign(raw, private))
    progress(f"signed bundle {out}: kind {kind}, sequence {number}, {len(files)} files")
    return manifest


def _kind(plan: BundlePlan) -> Kind:
    if plan.software is not None:
        if plan.sources or plan.models:
            raise BundleError("a software bundle carries nothing else; build KB or model bundles separately")
        return "software"
    if plan.sources and plan.models:
        return "kb+model"
    if plan.sources:
        return "kb"
    if plan.models:
        return "model"
    raise BundleError("nothing to bundle: give a KB source folder, a model file, or both")
