"""Helpers shared by the bundle tests (no tests here): keys, bundles, import contexts, answers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from kb.build import SourceSpec
from kb.bundle.importer import ImportContext
from kb.bundle.limits import Limits
from kb.bundle.manifest import MANIFEST, SIGNATURE
from kb.bundle.pack import BundlePlan, build_bundle
from kb.bundle.sign import keygen, load_private, sign
from kb.reader import KnowledgeBase
from kb.versions import DB_NAME, VersionStore

REPO = Path(__file__).resolve().parent.parent
SAMPLE_KB = REPO / "kb" / "sample"
ORIGINAL_TITLE = "Drive motor overload"


def make_key(folder: Path, name: str = "eng", passphrase: bytes | None = None) -> Path:
    return keygen(folder, name, passphrase).private_path


def trust(home: Path, key_file: Path) -> None:
    (home / "keys").mkdir(parents=True, exist_ok=True)
    shutil.copy(key_file.with_suffix(".pub"), home / "keys" / key_file.with_suffix(".pub").name)


def current_db(home: Path) -> Path:
    return VersionStore(home / "kb").current_path() / DB_NAME


def make_bundle(out: Path, key_file: Path, *, source: Path = SAMPLE_KB, embedder: Any = None,
                reuse_db: Path | None = None, sequence: int | None = None, label: str = "test") -> Path:
    build_bundle(BundlePlan(sources=[SourceSpec(source)], label=label), out, key_file, sequence=sequence,
                 embedder=embedder, reuse_db=reuse_db)
    return out


def edited_sample(folder: Path, title: str) -> Path:
    """A copy of the sample KB where code A01 (CV-200, English) has another title."""
    shutil.copytree(SAMPLE_KB, folder)
    table = folder / "codes" / "cv200.csv"
    text = table.read_text(encoding="utf-8")
    assert f"A01,{ORIGINAL_TITLE}," in text
    table.write_text(text.replace(f"A01,{ORIGINAL_TITLE},", f"A01,{title},"), encoding="utf-8")
    return folder


def context(home: Path, embedder: Any = None, **overrides: Any) -> ImportContext:
    values: dict[str, Any] = {
        "kb_dir": home / "kb", "keys_dir": home / "keys", "staging_dir": home / "staging",
        "state_file": home / "bundle-state.json", "models_dir": home / "models", "embedder": embedder,
        "limits": Limits(),
    }
    values.update(overrides)
    return ImportContext(**values)


def a01_title(home: Path) -> str:
    kbase = KnowledgeBase(VersionStore(home / "kb").current_path())
    try:
        entry = kbase.lookup("A01", machine_model="CV-200", lang="en").entry
        assert entry is not None
        return entry.title
    finally:
        kbase.close()


def resign(bundle: Path, key_file: Path, *, edit: Any = None, raw: bytes | None = None) -> None:
    """Re-list the bundle's files, let `edit` change the manifest dict, and sign it again."""
    if raw is None:
        data = json.loads((bundle / MANIFEST).read_bytes())
        files = []
        for path in sorted(p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = path.relative_to(bundle).as_posix()
            if relative in (MANIFEST, SIGNATURE):
                continue
            files.append({"path": relative, "size": path.stat().st_size,
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
        data["files"] = files
        if edit is not None:
            edit(data)
        raw = json.dumps(data, indent=1).encode()
    (bundle / MANIFEST).write_bytes(raw)
    (bundle / SIGNATURE).write_bytes(sign(raw, load_private(key_file)))
