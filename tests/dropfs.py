"""A test-only FUSE file system that forgets, at a simulated power cut, everything not fsynced.

`python tests/dropfs.py BACKING MOUNTPOINT DURABLE` mounts BACKING at MOUNTPOINT (libfuse 3
through mfusepy). Every operation passes through to BACKING at once, so the processes on top see
an ordinary file system, page cache and all. Alongside, DURABLE holds what a disk would still
hold after the power went: a file's bytes as of its last fsync/fdatasync, a folder's entries
(name -> inode) as of its last fsync. Everything present at mount time counts as synced.

The power cut is a SIGKILL of this process (nothing is flushed on the way out); then
`materialize(DURABLE, OUT)` lays out the surviving tree: folders with the entries last synced,
files with the bytes last synced under their inode (a file whose folder entry was synced but
whose data never was comes back empty, as on a real disk), symlinks as synced with their
folder. A rename that was never followed by an fsync of its folder is simply not there.

A model of the guarantees POSIX gives, not of one file system's extra ordering (ext4's
data=ordered, say): stricter than real disks, which is what such a test wants.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

ROOT = "root.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Durable:
    """What survives: `inodes/<ino>` (file bytes) and `dirs/<ino>.json` (a folder's entries)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "inodes").mkdir(parents=True, exist_ok=True)
        (folder / "dirs").mkdir(parents=True, exist_ok=True)

    def sync_file(self, ino: int, data: bytes) -> None:
        _write_atomic(self.folder / "inodes" / str(ino), data)

    def sync_dir(self, ino: int, backing_dir: Path) -> None:
        entries: dict[str, list[Any]] = {}
        for name in os.listdir(backing_dir):
            info = os.lstat(backing_dir / name)
            if stat.S_ISDIR(info.st_mode):
                entries[name] = [info.st_ino, "dir", None]
            elif stat.S_ISLNK(info.st_mode):
                entries[name] = [info.st_ino, "link", os.readlink(backing_dir / name)]
            else:
                entries[name] = [info.st_ino, "file", None]
        _write_atomic(self.folder / "dirs" / f"{ino}.json", json.dumps(entries).encode())

    def snapshot(self, backing: Path) -> None:
        """Everything present at mount time is on the disk already."""
        _write_atomic(self.folder / ROOT, json.dumps(os.lstat(backing).st_ino).encode())
        for top, _dirs, files in os.walk(backing):
            here = Path(top)
            self.sync_dir(os.lstat(here).st_ino, here)
            for name in files:
                path = here / name
                if not path.is_symlink():
                    self.sync_file(os.lstat(path).st_ino, path.read_bytes())


def materialize(durable: Path, out: Path) -> None:
    """Lay out at `out` the tree a power cut would have left."""
    root = json.loads((durable / ROOT).read_text())

    def build(ino: int, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        listing = durable / "dirs" / f"{ino}.json"
        entries = json.loads(listing.read_text()) if listing.exists() else {}
        for name, (child, kind, link) in entries.items():
            path = target / name
            if kind == "dir":
                build(child, path)
            elif kind == "link":
                os.symlink(link, path)
            else:
                data = durable / "inodes" / str(child)
                path.write_bytes(data.read_bytes() if data.exists() else b"")

    build(root, out)


def serve(backing: Path, mountpoint: Path, durable_dir: Path) -> None:
    from mfusepy import FUSE, FuseOSError, Operations

    durable = Durable(durable_dir)
    durable.snapshot(backing)

    def real(path: str) -> Path:
        return backing / path.lstrip("/")

    def guard(call: Any) -> Any:
        try:
            return call()
        except OSError as error:
            raise FuseOSError(error.errno or errno.EIO) from error

    class Passthrough(Operations):  # type: ignore[misc]
        use_ns = True

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            info = guard(lambda: os.lstat(real(path)))
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns",
                    "st_ctime_ns", "st_ino")
            attrs = {k.replace("_ns", ""): getattr(info, k) for k in keys}
            return attrs

        def access(self, path: str, amode: int) -> int:
            if not os.access(real(path), amode):
                raise FuseOSError(errno.EACCES)
            return 0

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *guard(lambda: os.listdir(real(path)))]

        def readlink(self, path: str) -> str:
            return str(guard(lambda: os.readlink(real(path))))

        def symlink(self, target: str, source: str) -> int:
            guard(lambda: os.symlink(source, real(target)))
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            guard(lambda: os.mkdir(real(path), mode))
            return 0

        def rmdir(self, path: str) -> int:
            guard(lambda: os.rmdir(real(path)))
            return 0

        def unlink(self, path: str) -> int:
            guard(lambda: os.unlink(real(path)))
            return 0

        def rename(self, old: str, new: str) -> int:
            guard(lambda: os.rename(real(old), real(new)))
            return 0

        def chmod(self, path: str, mode: int) -> int:
            guard(lambda: os.chmod(real(path), mode))
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            guard(lambda: os.chown(real(path), uid, gid))
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            guard(lambda: os.utime(real(path), ns=times) if times else os.utime(real(path)))
            return 0

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            guard(lambda: os.truncate(real(path), length))
            return 0

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            return int(guard(lambda: os.open(real(path), os.O_RDWR | os.O_CREAT, mode)))

        def open(self, path: str, flags: int) -> int:
            keep = flags & ~(os.O_APPEND | os.O_CREAT | os.O_EXCL)  # offsets come from the kernel
            if keep & os.O_ACCMODE == os.O_WRONLY:
                keep = (keep & ~os.O_ACCMODE) | os.O_RDWR  # fsync reads the bytes back
            return int(guard(lambda: os.open(real(path), keep)))

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return bytes(guard(lambda: os.pread(fh, size, offset)))

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return int(guard(lambda: os.pwrite(fh, data, offset)))

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            blocks, offset = [], 0
            while block := os.pread(fh, 1 << 20, offset):
                blocks.append(block)
                offset += len(block)
            durable.sync_file(os.fstat(fh).st_ino, b"".join(blocks))
            return 0

        def opendir(self, path: str) -> int:
            return 0

        def releasedir(self, path: str, fh: int) -> int:
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            folder = real(path)
            durable.sync_dir(os.lstat(folder).st_ino, folder)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            info = os.statvfs(real(path))
            return {k: getattr(info, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                   "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    FUSE(Passthrough(), str(mountpoint), foreground=True, nothreads=True, fsname="dropfs")


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
