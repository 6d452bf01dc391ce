"""Hostile and broken bundles: each is refused with a message that says why, and nothing changes."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_bundle_support import (
    ORIGINAL_TITLE,
    a01_title,
    context,
    make_bundle,
    make_key,
    resign,
    trust,
)

from kb.bundle.importer import ImportRefused, import_bundle
from kb.bundle.limits import Limits
from kb.bundle.manifest import MANIFEST, SIGNATURE
from kb.versions import VersionStore

CODES = "kb-source/sample/codes/cv200.csv"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_key(tmp_path_factory.mktemp("engineer"))


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory, signer: Path, built_home: Path, embedder: Any) -> Path:
    """A valid bundle of the sample KB with precomputed vectors (sequence 1)."""
    db = VersionStore(built_home / "kb").current_path() / "kb.sqlite"
    return make_bundle(tmp_path_factory.mktemp("stick") / "bundle", signer, embedder=embedder, reuse_db=db)


def flip(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def state(home: Path, key_file: Path, sequence: int = 0, revoked: tuple[str, ...] = ()) -> None:
    from kb.bundle.sign import key_id, load_private

    ident = key_id(load_private(key_file).public_key())
    keys = {ident: {"sequence": sequence}} if sequence else {}
    (home / "bundle-state.json").write_text(json.dumps({"keys": keys, "revoked": list(revoked or ())}))


def _key_id(key_file: Path) -> str:
    from kb.bundle.sign import key_id, load_private

    return key_id(load_private(key_file).public_key())


# Each case: (make it hostile, expected words in the refusal, limits to use).
Mutator = Callable[[Path, Path, Path], Any]  # (bundle, key file, appliance home)


def wrong_key(bundle: Path, key: Path, home: Path) -> None:
    other = make_key(home.parent / "intruder", "intruder")
    resign(bundle, other, edit=lambda d: d.update(key_id=_key_id(other)))


def traversal(bundle: Path, key: Path, home: Path) -> None:
    (bundle.parent / "evil.csv").write_text("code,title\nX,pwned\n")
    resign(bundle, key, edit=lambda d: d["files"].append(
        {"path": "../evil.csv", "size": 20, "sha256": "0" * 64}))


def absolute(bundle: Path, key: Path, home: Path) -> None:
    resign(bundle, key, edit=lambda d: d["files"].append({"path": "/etc/passwd", "size": 1, "sha256": "0" * 64}))


def symlink(bundle: Path, key: Path, home: Path) -> None:
    os.symlink("/etc/passwd", bundle / "kb-source/sample/codes/passwd.csv")
    resign(bundle, key)


def hard_link(bundle: Path, key: Path, home: Path) -> None:
    os.link(bundle / CODES, bundle / "kb-source/sample/codes/again.csv")
    resign(bundle, key)


def fifo(bundle: Path, key: Path, home: Path) -> None:
    os.mkfifo(bundle / "kb-source/sample/codes/pipe.csv")


def non_utf8(bundle: Path, key: Path, home: Path) -> None:
    with open(os.path.join(os.fsencode(bundle / "kb-source/sample/codes"), b"\xff\xfe.csv"), "wb") as handle:
        handle.write(b"code,title\n")


def malformed(bundle: Path, key: Path, home: Path) -> None:
    resign(bundle, key, raw=b'{"format_version": 1, "kind": "kb", "files": [')


def huge_manifest(bundle: Path, key: Path, home: Path) -> None:
    raw = (bundle / MANIFEST).read_bytes()
    resign(bundle, key, raw=raw[:-2] + b" " * (5 << 20) + raw[-2:])


def many_files(bundle: Path, key: Path, home: Path) -> None:
    for n in range(30):
        (bundle / "kb-source/sample/manuals" / f"extra{n}.md").write_text(f"# Extra {n}\n")
    resign(bundle, key)


def unbuildable(bundle: Path, key: Path, home: Path) -> None:
    # Correctly signed, but the code table is broken: the build fails and is discarded.
    (bundle / CODES).write_text("code,title,steps\nA01,,\n", encoding="utf-8")
    (bundle / "kb-source/sample/codes/common.csv").write_text("nonsense\n\x00\x00", encoding="utf-8")
    resign(bundle, key)


CASES: dict[str, tuple[Mutator, str, Limits]] = {
    "flipped payload byte": (lambda b, k, h: flip(b / CODES), "does not match its sha256", Limits()),
    "flipped signature byte": (lambda b, k, h: flip(b / SIGNATURE, 5), "signature does not match", Limits()),
    "flipped manifest byte": (lambda b, k, h: flip(b / MANIFEST, 40), "signature does not match", Limits()),
    "missing signature": (lambda b, k, h: (b / SIGNATURE).unlink(), "unsigned", Limits()),
    "missing manifest": (lambda b, k, h: (b / MANIFEST).unlink(), "no manifest.json", Limits()),
    "wrong key": (wrong_key, "does not trust", Limits()),
    "revoked key": (lambda b, k, h: state(h, k, revoked=(_key_id(k),)), "revoked", Limits()),
    "truncated file": (lambda b, k, h: (b / CODES).write_bytes((b / CODES).read_bytes()[:100]), "truncated", Limits()),
    "missing file": (lambda b, k, h: (b / CODES).unlink(), "missing from the bundle", Limits()),
    "extra unlisted file": (lambda b, k, h: (b / "kb-source/sample/codes/x.csv").write_text("code,title\n"),
                            "not listed in the signed manifest", Limits()),
    "symlink": (symlink, "symbolic link", Limits()),
    "hard link": (hard_link, "hard link", Limits()),
    "fifo": (fifo, "device, FIFO or socket", Limits()),
    "path traversal": (traversal, "'..'", Limits()),
    "absolute path": (absolute, "absolute", Limits()),
    "oversized file": (lambda b, k, h: None, "over the limit", Limits(max_file_bytes=20_000)),
    "total size": (lambda b, k, h: None, "more than", Limits(max_total_bytes=200_000)),
    "too many files": (many_files, "more than 20 files", Limits(max_files=20)),
    "downgrade": (lambda b, k, h: state(h, k, sequence=5), "downgrade", Limits()),
    "replay": (lambda b, k, h: state(h, k, sequence=1), "replay", Limits()),
    "malformed json": (malformed, "not valid UTF-8 JSON", Limits()),
    "huge manifest": (huge_manifest, "over the limit", Limits()),
    "non-utf8 name": (non_utf8, "not valid UTF-8", Limits()),
    "future format": (lambda b, k, h: resign(b, k, edit=lambda d: d.update(format_version=9)), "format_version", Limits()),
    "unbuildable kb": (unbuildable, "could not be installed", Limits()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_bundle_is_refused_and_nothing_changes(
    case: str, kb_home: Path, tmp_path: Path, signer: Path, good_bundle: Path
) -> None:
    mutate, expected, limits = CASES[case]
    trust(kb_home, signer)
    bundle = tmp_path / "stick" / "bundle"
    shutil.copytree(good_bundle, bundle)
    mutate(bundle, signer, kb_home)
    store = VersionStore(kb_home / "kb")
    versions_before = sorted(p.name for p in store.versions_dir.iterdir())

    with pytest.raises(ImportRefused) as refused:
        import_bundle(bundle, context(kb_home, limits=limits))

    assert expected in str(refused.value), str(refused.value)
    assert store.current() == 1
    assert a01_title(kb_home) == ORIGINAL_TITLE
    assert sorted(p.name for p in store.versions_dir.iterdir()) == versions_before
    assert not list((kb_home / "staging").glob("import-*"))
