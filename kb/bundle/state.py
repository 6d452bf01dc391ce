"""What the appliance remembers about imports: highest sequence per key and revoked keys.

`bundle-state.json` in the state directory, replaced atomically (write, fsync, rename, fsync
the folder), so a power cut leaves the old or the new state. Each KB version built from a
bundle also carries `BUNDLE.json` (key id, sequence), so a crash between switching versions
and writing this file is settled on the next start (`importer.recover`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kb.bundle.manifest import now_iso
from kb.errors import BundleError

STATE_NAME = "bundle-state.json"
REVOKED_NAME = "revoked"  # optional admin list in the keys directory: one key id per line


@dataclass
class ImportState:
    path: Path
    keys: dict[str, dict[str, object]] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ImportState:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            keys = {str(k): dict(v) for k, v in data.get("keys", {}).items()}
            revoked = [str(v) for v in data.get("revoked", [])]
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise BundleError(
                f"the import state {path} is unreadable ({error}); restore it with `shifu restore` before importing"
            ) from error
        return cls(path, keys, revoked)

    def highest(self, key_id: str) -> int:
        value = self.keys.get(key_id, {}).get("sequence", 0)
        return int(value) if isinstance(value, int | str) else 0

    def record(self, key_id: str, sequence: int, version: int | None, label: str = "") -> None:
        if sequence > self.highest(key_id):
            self.keys[key_id] = {"sequence": sequence, "version": version, "label": label, "imported": now_iso()}

    def revoke(self, key_ids: list[str]) -> list[str]:
        added = [k for k in key_ids if k not in self.revoked]
        self.revoked.extend(added)
        return added

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = json.dumps({"keys": self.keys, "revoked": self.revoked}, indent=1, sort_keys=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)


def revoked_keys(state: ImportState, keys_dir: Path) -> set[str]:
    """Keys revoked by signed bundles plus those an administrator listed in `keys/revoked`."""
    found = set(state.revoked)
    listed = keys_dir / REVOKED_NAME
    if listed.is_file():
        for line in listed.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.split("#")[0].strip()
            if line:
                found.add(line)
    return found


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """One import at a time; a second one is refused at once rather than queued."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BundleError("another bundle import is running; wait for it to finish") from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
