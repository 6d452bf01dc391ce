"""Verify a staged bundle: signature by a trusted, unrevoked key, then every file's size and hash."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kb.bundle.limits import Limits
from kb.bundle.manifest import MANIFEST, SIGNATURE, Manifest, parse_manifest
from kb.bundle.sign import verify_signature
from kb.errors import BundleError

SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class VerifiedBundle:
    """A staged bundle whose signature and files have all been checked."""

    root: Path
    manifest: Manifest
    key_id: str


def _read_small(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError as error:
        raise BundleError(what) from error
    if len(data) > limit:
        raise BundleError(f"{path.name} is over the limit of {limit} bytes; refused")
    return data


def _claimed_key(raw: bytes) -> str:
    """The key id an (untrusted) manifest names, only to word the error message."""
    try:
        value = json.loads(raw.decode("utf-8")).get("key_id", "")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    return value if isinstance(value, str) and len(value) <= 64 else ""


def check_signature(root: Path, trusted: dict[str, Ed25519PublicKey], limits: Limits) -> tuple[bytes, str]:
    """The manifest bytes and the id of the trusted key that signed them."""
    raw = _read_small(root / MANIFEST, limits.max_manifest_bytes,
                      "there is no manifest.json: this is not a Shifu bundle (or the copy is incomplete)")
    signature = _read_small(root / SIGNATURE, limits.max_signature_bytes,
                            "there is no manifest.sig: the bundle is unsigned; sign it with `shifu bundle build --sign`")
    if not trusted:
        raise BundleError("no trusted public keys are installed (keys directory is empty); install the engineer's .pub")
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"manifest.sig is {len(signature)} bytes, not an Ed25519 signature ({SIGNATURE_BYTES} bytes)")
    for ident, public in trusted.items():
        if verify_signature(raw, signature, public):
            return raw, ident
    claimed = _claimed_key(raw)
    if claimed and claimed not in trusted:
        raise BundleError(f"the bundle is signed with key {claimed}, which this appliance does not trust")
    raise BundleError("the signature does not match: manifest.json or manifest.sig was altered or damaged")


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def staged_files(root: Path) -> set[str]:
    found = set()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            found.add((Path(folder) / name).relative_to(root).as_posix())
    return found - {MANIFEST, SIGNATURE}


def verify_staged(
    root: Path,
    trusted: dict[str, Ed25519PublicKey],
    limits: Limits,
    revoked: set[str] | frozenset[str] = frozenset(),
    progress: Callable[[int], None] | None = None,
) -> VerifiedBundle:
    """Check the staged copy at `root`; raise BundleError saying what is wrong."""
    raw, signer = check_signature(root, trusted, limits)
    if signer in revoked:
        raise BundleError(f"the bundle is signed with key {signer}, which has been revoked")
    manifest = parse_manifest(raw, limits)
    if manifest.key_id != signer:
        raise BundleError(f"the manifest names key {manifest.key_id} but was signed with key {signer}; refused")
    listed = {f.path for f in manifest.files}
    present = staged_files(root)
    extra, missing = sorted(present - listed), sorted(listed - present)
    if missing:
        raise BundleError(f"{missing[0]} is listed in the manifest but missing from the bundle ({len(missing)} missing)")
    if extra:
        raise BundleError(f"{extra[0]} is in the bundle but not listed in the signed manifest; refused")
    for entry in manifest.files:
        path = root / entry.path
        size = path.stat().st_size
        if size != entry.size:
            raise BundleError(f"{entry.path} is {size} bytes but the manifest says {entry.size} (truncated or altered)")
        if sha256_file(path, progress) != entry.sha256:
            raise BundleError(f"{entry.path} does not match its sha256 in the manifest (altered or damaged)")
    return VerifiedBundle(root=root, manifest=manifest, key_id=signer)
