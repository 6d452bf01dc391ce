"""Knowledge-base versions side by side, with an atomic `current` pointer.

`<kb>/versions/<n>/` holds one complete version (kb.sqlite + chroma/). `<kb>/current`
is a symlink to the active one, switched with rename(2), so a reader always sees either
the old or the new version. Numbers only grow; old versions stay for rollback.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from kb.errors import KBError

_NUMBER = re.compile(r"^[0-9]+$")
DB_NAME = "kb.sqlite"
COMPLETE_MARK = "COMPLETE"


class VersionStore:
    """The versions directory and the current pointer of one knowledge base."""

    def __init__(self, kb_dir: Path) -> None:
        self.kb_dir = kb_dir
        self.versions_dir = kb_dir / "versions"
        self.current_link = kb_dir / "current"

    def versions(self) -> list[int]:
        """Complete versions, oldest first (half-built directories are ignored)."""
        if not self.versions_dir.exists():
            return []
        found = [
            int(entry.name)
            for entry in self.versions_dir.iterdir()
            if _NUMBER.match(entry.name) and (entry / COMPLETE_MARK).exists()
        ]
        return sorted(found)

    def path(self, version: int) -> Path:
        return self.versions_dir / str(version)

    def next_number(self) -> int:
        used = [int(e.name.split(".")[0]) for e in self.versions_dir.glob("*") if e.name.split(".")[0].isdigit()]
        return max(used, default=0) + 1

    def staging_path(self, version: int) -> Path:
        return self.versions_dir / f"{version}.building"

    def current(self) -> int | None:
        """The active version number, or None when nothing is active yet."""
        try:
            target = os.readlink(self.current_link)
        except (FileNotFoundError, OSError):
            return None
        name = Path(target).name
        if not _NUMBER.match(name) or not (self.versions_dir / name / COMPLETE_MARK).exists():
            return None
        return int(name)

    def current_path(self) -> Path:
        version = self.current()
        if version is None:
            raise KBError(
                f"no knowledge base is active in {self.kb_dir}; build one with `shifu kb build SOURCE`"
            )
        return self.path(version)

    def publish(self, built: Path, version: int) -> Path:
        """Rename a complete, self-tested build into `versions/<n>` and fsync `versions/`, so the
        new folder is on the disk before anyone is told it exists."""
        final = self.path(version)
        sync_tree(built)
        os.rename(built, final)
        fsync_dir(self.versions_dir)
        return final

    def activate(self, version: int) -> None:
        """Point `current` at a complete version, atomically."""
        if version not in self.versions():
            raise KBError(f"knowledge-base version {version} does not exist (have {self.versions()})")
        tmp = self.kb_dir / f".current.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(Path("versions") / str(version), tmp)
        os.replace(tmp, self.current_link)
        fsync_dir(self.kb_dir)

    def previous(self) -> int | None:
        """The newest complete version older than the current one."""
        current = self.current()
        older = [v for v in self.versions() if current is None or v < current]
        return older[-1] if older else None

    def rollback(self, version: int | None = None) -> int:
        """Activate the given version, or the one before the current; return it."""
        target = version if version is not None else self.previous()
        if target is None:
            raise KBError("there is no earlier knowledge-base version to roll back to")
        self.activate(target)
        return target

    def discard(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


def sync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (deepest first), so that what a rename of `root`
    publishes is complete on the disk: its data (SQLite, Chroma) and the renames made inside it."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def fsync_dir(path: Path) -> None:
    """Make the renames inside `path` durable (a rename lives in its directory's data)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
