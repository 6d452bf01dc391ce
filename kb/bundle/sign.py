"""Ed25519 signing keys: `NAME.key` (PKCS#8 PEM, optionally passphrase-protected) and `NAME.pub`.

The engineer keeps `NAME.key` and its sequence counter `NAME.seq`; the appliance trusts every
`*.pub` in its keys directory. A key id is the first 16 hex digits of sha256(raw public key).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kb.errors import BundleError

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
COUNTER_SUFFIX = ".seq"
_MAX_KEY_FILE = 16 * 1024


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def keygen(out_dir: Path, name: str = "shifu", passphrase: bytes | None = None) -> KeyPair:
    """Create `NAME.key` (mode 0600) and `NAME.pub` in out_dir; never overwrite an existing key."""
    if not name or "/" in name or name.startswith("."):
        raise BundleError(f"key name {name!r} is not a plain file name")
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / f"{name}{PRIVATE_SUFFIX}", out_dir / f"{name}{PUBLIC_SUFFIX}"
    for path in (private_path, public_path):
        if path.exists():
            raise BundleError(f"{path} already exists; choose another --name or --out")
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    return KeyPair(private_path, public_path, key_id(private.public_key()))


def load_private(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()[: _MAX_KEY_FILE + 1]
    except OSError as error:
        raise BundleError(f"cannot read signing key {path}: {error.strerror}") from error
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as error:
        if passphrase:
            raise BundleError(f"signing key {path} is not passphrase-protected; drop --passphrase-env") from error
        raise BundleError(f"signing key {path} is passphrase-protected; give it with --passphrase-env VAR") from error
    except ValueError as error:
        raise BundleError(f"signing key {path} cannot be read (wrong passphrase or not a PEM key)") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"signing key {path} is not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()[: _MAX_KEY_FILE + 1]
        key = serialization.load_pem_public_key(data)
    except (OSError, ValueError) as error:
        raise BundleError(f"public key {path} cannot be read: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"public key {path} is not an Ed25519 key")
    return key


def trusted_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """Every readable `*.pub` in the keys directory, by key id (unreadable files are skipped)."""
    found: dict[str, Ed25519PublicKey] = {}
    if not keys_dir.is_dir():
        return found
    for path in sorted(keys_dir.glob(f"*{PUBLIC_SUFFIX}")):
        if not path.is_file():
            continue
        try:
            key = load_public(path)
        except BundleError:
            continue
        found[key_id(key)] = key
    return found


def sign(data: bytes, private: Ed25519PrivateKey) -> bytes:
    return private.sign(data)


def verify_signature(data: bytes, signature: bytes, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def next_sequence(private_path: Path, requested: int | None = None) -> int:
    """Advance the counter kept beside the private key and return the new sequence number.

    The counter is written (and fsynced) before the bundle is signed, so a crash never lets
    two bundles share a number.
    """
    counter = private_path.with_suffix(COUNTER_SUFFIX)
    current = 0
    if counter.exists():
        try:
            current = int(counter.read_text().strip() or "0")
        except ValueError as error:
            raise BundleError(f"sequence counter {counter} is corrupt; fix it or pass --sequence N") from error
    value = requested if requested is not None else current + 1
    if value < 1:
        raise BundleError("the sequence number must be positive")
    tmp = counter.with_suffix(".seq.tmp")
    tmp.write_text(f"{max(value, current)}\n")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, counter)
    return value
