"""Hashes a root step took this boot, trusted read-only by the service accounts' loaders.

`shifu model verify --boot` runs as root before the kiosk, server and intake start
(systemd/units/shifu-model-hash.service) and writes what it read in full into a root-owned file
on tmpfs (`paths.boot_hash_file()`), keyed like the per-boot cache (boot id, device, inode, size,
mtime and ctime: models.registry). A loader running as `shifu` then takes a model's hash from
there instead of reading 4.7 GB again, but only from a file that neither it nor anyone but its
owner (root, or this very user in development) can write.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from models.registry import _boot_key, _load_cache, boot_id


def trusted(path: Path) -> bool:
    """The file and its folder are owned by root (or by this user) and writable by nobody else."""
    for item in (path, path.parent):
        try:
            info = os.lstat(item)
        except OSError:
            return False
        if stat.S_ISLNK(info.st_mode) or info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o022:
            return False
    return True


def lookup(fd: int, path: Path | None) -> str | None:
    """The sha256 the root step recorded for the file open as `fd`, if it is unchanged since; else None."""
    if path is None or not boot_id() or not trusted(path):
        return None
    return _load_cache(path).get(_boot_key(os.fstat(fd)))
