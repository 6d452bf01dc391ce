"""Copy a bundle from the stick into internal staging, refusing hostile entries on the way.

Only regular files and folders are copied. Symlinks, hard links, devices, FIFOs, sockets,
names that are not UTF-8, too many or too large files are refused before anything is read.
Each file is opened without following links and checked again after opening (it must still
be the same regular file); a file that shrinks, grows or disappears while being copied (the
stick was pulled) stops the copy. Nothing on the stick is trusted after this step: all
checks run on the staged copy.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kb.bundle.limits import Limits, human
from kb.bundle.manifest import MANIFEST, SIGNATURE
from kb.errors import BundleError

CopyProgress = Callable[[str, int, int], None]  # (path, bytes done, bytes total)
_CHUNK = 1 << 20
# Litter that desktop systems drop into folders on a stick; never copied, never trusted.
_IGNORED = {".DS_Store", ".Trashes", ".fseventsd", ".Spotlight-V100", "System Volume Information", "$RECYCLE.BIN"}


@dataclass(frozen=True)
class _Found:
    relative: str
    size: int
    device: int
    inode: int


def _ignored(name: str) -> bool:
    return name in _IGNORED or name.startswith("._")


def scan(source: Path, limits: Limits) -> list[_Found]:
    """Every file of the bundle folder, after checking each entry's type, name and size."""
    try:
        root_stat = os.stat(source)
    except OSError as error:
        raise BundleError(f"cannot read {source}: {error.strerror}; is the stick inserted?") from error
    if not stat.S_ISDIR(root_stat.st_mode):
        raise BundleError(f"{source} is not a folder; give the bundle folder (the one holding manifest.json)")
    found: list[_Found] = []
    total = 0

    def walk(folder: bytes, prefix: str, depth: int) -> None:
        nonlocal total
        if depth > limits.max_depth:
            raise BundleError(f"{prefix.rstrip('/')}: folders nested deeper than {limits.max_depth}; refused")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            raise BundleError(f"cannot list {prefix or 'the bundle'}: {error.strerror}") from error
        for entry in entries:
            raw = entry.name
            assert isinstance(raw, bytes)
            try:
                name = raw.decode("utf-8", errors="strict")
            except UnicodeDecodeError as error:
                raise BundleError(
                    f"{prefix}{raw.decode('utf-8', errors='replace')}: file name is not valid UTF-8; refused"
                ) from error
            relative = prefix + name
            if _ignored(name):
                continue
            if len(relative) > limits.max_path_chars:
                raise BundleError(f"{relative[:60]}...: path longer than {limits.max_path_chars} characters")
            info = entry.stat(follow_symlinks=False)
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"{relative} is a symbolic link; bundles may hold only regular files")
            if stat.S_ISDIR(mode):
                walk(entry.path, relative + "/", depth + 1)  # type: ignore[arg-type]
                continue
            if not stat.S_ISREG(mode):
                raise BundleError(f"{relative} is a device, FIFO or socket; bundles may hold only regular files")
            if info.st_nlink > 1:
                raise BundleError(f"{relative} is a hard link ({info.st_nlink} names); refused")
            limit = limits.max_manifest_bytes if relative == MANIFEST else limits.max_file_bytes
            if relative == SIGNATURE:
                limit = limits.max_signature_bytes
            if info.st_size > limit:
                raise BundleError(f"{relative} is {human(info.st_size)}, over the limit of {human(limit)}; refused")
            total += info.st_size
            if total > limits.max_total_bytes:
                raise BundleError(f"the bundle holds more than {human(limits.max_total_bytes)}; refused")
            found.append(_Found(relative, info.st_size, info.st_dev, info.st_ino))
            if len(found) > limits.max_files + 2:  # + manifest and signature
                raise BundleError(f"the bundle holds more than {limits.max_files} files; refused")

    walk(os.fsencode(source), "", 0)
    return found


def copy_to_staging(source: Path, dest: Path, limits: Limits, progress: CopyProgress | None = None) -> list[str]:
    """Copy the bundle folder to `dest` (which must not exist); return the relative paths copied."""
    files = scan(source, limits)
    total = sum(f.size for f in files)
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < total * 2 + 64 * (1 << 20):
        raise BundleError(
            f"not enough free space for the import: the bundle needs {human(total * 2)}, {human(free)} free"
        )
    dest.mkdir()
    done = 0
    for item in files:
        target = dest / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        done = _copy_one(source, item, target, done, total, progress)
    return [f.relative for f in files]


def _copy_one(source: Path, item: _Found, target: Path, done: int, total: int, progress: CopyProgress | None) -> int:
    path = source / item.relative
    pulled = f"{item.relative}: the stick was removed or the file changed while it was copied; nothing was changed"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise BundleError(f"{item.relative} became a symbolic link while copying; refused") from error
        raise BundleError(pulled) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (item.device, item.inode):
            raise BundleError(f"{item.relative} was replaced while copying; refused")
        copied = 0
        with open(target, "xb") as out:
            while True:
                try:
                    block = os.read(fd, _CHUNK)
                except OSError as error:
                    raise BundleError(pulled) from error
                if not block:
                    break
                copied += len(block)
                if copied > item.size:
                    raise BundleError(pulled)
                out.write(block)
                if progress is not None:
                    progress(item.relative, done + copied, total)
        if copied != item.size:
            raise BundleError(pulled)
        if progress is not None and item.size == 0:
            progress(item.relative, done, total)
    finally:
        os.close(fd)
    return done + item.size
