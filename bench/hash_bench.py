"""`python -m bench.hash_bench [--gib 4.7] [--dir DIR]`: what checking a production model's sha256 costs.

Writes a temporary file of the production base's size (Qwen2.5-7B-Instruct Q4_K_M, 4.7 GB) with
non-repeating data (a sparse file would read as zeros from no disk at all and flatter the
figure), then times: a full read and hash as `shifu model verify` and the loader do it
(models.registry.file_sha256), the same read again after the page cache was dropped where this
machine allows it (root), the per-boot cache hit the loader uses instead
(models.registry.fd_sha256 keyed by boot id, device, inode, size, mtime and ctime), and the GGUF
header check on the embedded model. The file is removed afterwards. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def write_file(path: Path, size: int) -> float:
    started = time.perf_counter()
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        written = 0
        counter = 0
        while written < size:
            # Vary every block so that no layer below can deduplicate or compress it away.
            chunk = counter.to_bytes(8, "little") + block[8:]
            chunk = chunk[: size - written]
            handle.write(chunk)
            written += len(chunk)
            counter += 1
        handle.flush()
        os.fsync(handle.fileno())
    return time.perf_counter() - started


def drop_caches(path: Path) -> bool:
    """Evict the file from the page cache (POSIX_FADV_DONTNEED after fsync works unprivileged)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hash_bench")
    parser.add_argument("--gib", type=float, default=4.7e9 / (1 << 30), help="file size in GiB (default 4.7 GB)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write it (default: the temp folder)")
    args = parser.parse_args()
    from models.gguf_header import read_header_file
    from models.registry import embedded_model_path, fd_sha256, file_sha256

    size = int(args.gib * (1 << 30))
    folder = Path(tempfile.mkdtemp(prefix="shifu-hash-bench-", dir=args.dir))
    path = folder / "production-size.gguf"
    cache = folder / "hashes.json"
    try:
        wrote = write_file(path, size)
        print(f"file: {size / 1e9:.2f} GB written in {wrote:.1f} s ({size / wrote / (1 << 20):.0f} MiB/s) at {path}")
        for label in ("warm page cache", "after evicting the page cache"):
            if label.startswith("after"):
                drop_caches(path)
            started = time.perf_counter()
            file_sha256(path)
            took = time.perf_counter() - started
            print(f"sha256, {label}: {took:.1f} s ({size / took / (1 << 20):.0f} MiB/s)")
        fd = os.open(path, os.O_RDONLY)
        try:
            started = time.perf_counter()
            fd_sha256(fd, cache)  # first time this boot: read in full and remembered
            first = time.perf_counter() - started
            started = time.perf_counter()
            fd_sha256(fd, cache)  # same inode, unchanged: the per-boot cache
            hit = time.perf_counter() - started
        finally:
            os.close(fd)
        print(f"per-boot cache: first load {first:.1f} s, later loads this boot {hit * 1000:.2f} ms")
        started = time.perf_counter()
        read_header_file(embedded_model_path())
        print(f"GGUF header check (embedded model, 49,152-token vocabulary): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
    finally:
        path.unlink(missing_ok=True)
        cache.unlink(missing_ok=True)
        folder.rmdir()


if __name__ == "__main__":
    main()
