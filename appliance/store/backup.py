"""`shifu backup DEST` / `shifu restore SRC`: what a replacement PC needs besides the software.

A backup folder `shifu-backup-<UTC time>/` holds `ops.sqlite` (a consistent copy taken with
SQLite's online backup API), the config file, the trusted keys, the model registry and the
import state, plus `backup.json` listing every file with its sha256. Restore checks those
hashes first and then puts each file in place atomically. Model files and KB versions are
not included: they come back with the next signed bundle. It lives with the operational
database's schema (`appliance.store.opstore`), whose tables it checks before overwriting.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from appliance.store.opstore import COUNTED
from kb.errors import ShifuError

BACKUP_FORMAT = 1
OPS_NAME = "ops.sqlite"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sqlite_copy(source: Path, target: Path, progress: Callable[[str], None]) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=256, progress=lambda _s, remaining, total: progress(f"database {total - remaining}/{total} pages"))
    finally:
        dst.close()
        src.close()


def backup(dest: Path, ops_db: Path, files: dict[str, Path], progress: Callable[[str], None] = lambda _m: None) -> Path:
    """Write a backup folder under dest. `files` maps a name in the backup to a file or folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    final = dest / f"shifu-backup-{stamp}"
    partial = dest / f".shifu-backup-{stamp}.partial"
    partial.mkdir(parents=True)
    if ops_db.exists():
        _sqlite_copy(ops_db, partial / OPS_NAME, progress)
    for name, path in files.items():
        if path.is_dir():
            shutil.copytree(path, partial / name, symlinks=False)
        elif path.is_file():
            shutil.copyfile(path, partial / name)
    listed = {p.relative_to(partial).as_posix(): _sha256(p) for p in sorted(partial.rglob("*")) if p.is_file()}
    (partial / "backup.json").write_text(json.dumps(
        {"format": BACKUP_FORMAT, "created": stamp, "files": listed}, indent=1))
    os.sync()
    os.replace(partial, final)
    return final


def restore(source: Path, ops_db: Path, files: dict[str, Path], *, force: bool = False,
            progress: Callable[[str], None] = lambda _m: None) -> list[str]:
    """Check a backup folder and put its files in place; return what was restored."""
    try:
        index = json.loads((source / "backup.json").read_text(encoding="utf-8"))
        listed: dict[str, str] = dict(index["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ShifuError(f"{source} is not a Shifu backup (backup.json missing or unreadable)") from error
    for name, digest in listed.items():
        path = source / name
        if ".." in Path(name).parts or not path.is_file() or _sha256(path) != digest:
            raise ShifuError(f"backup file {name} is missing or damaged; nothing was restored")
    if OPS_NAME in listed and ops_db.exists() and not force and _has_rows(ops_db):
        raise ShifuError(f"{ops_db} already holds data; pass --force to replace it with the backup")
    done = []
    if OPS_NAME in listed:
        ops_db.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(source / OPS_NAME, ops_db, progress)
        done.append(str(ops_db))
    for name, target in files.items():
        item = source / name
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(item.rglob("*")):
                if path.is_file():
                    _put(path, target / path.relative_to(item))
            done.append(str(target))
        elif item.is_file():
            _put(item, target)
            done.append(str(target))
    return done


def _put(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.restore")
    shutil.copyfile(source, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)


def _has_rows(db_path: Path) -> bool:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        for table in COUNTED:
            try:
                if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():  # noqa: S608
                    return True
            except sqlite3.OperationalError:
                continue
        return False
    finally:
        conn.close()
