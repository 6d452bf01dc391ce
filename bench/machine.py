"""What a bench result was measured on: commit, date, machine facts, and this machine's memory bandwidth."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def facts() -> dict[str, Any]:
    """Flat keys: commit (with `+dirty` when the tree had changes), UTC date, CPU, cores, RAM, load."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "appliance", "kb", "models", "bench"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {
        "commit": commit + ("+dirty" if dirty else ""),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "ram_gb": _ram_gb(),
        "load_avg_at_start": round(load, 2),
        "python": platform.python_version(),
        "llama_cpp_python": _version("llama_cpp_python"),
    }


def memory_bandwidth_gb_s(megabytes: int = 512, rounds: int = 5) -> float:
    """Best of `rounds` single-threaded copies of a buffer far larger than any cache (read + write bytes
    counted): about what one llama.cpp thread can stream from RAM."""
    import numpy as np

    source = np.ones(megabytes * 1024 * 1024 // 8)
    target = np.empty_like(source)
    np.copyto(target, source)  # fault the pages in before timing
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return round(2 * source.nbytes / best / 1e9, 2)


def rss_mb(pid: int | str = "self") -> int:
    """Resident memory of a process in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0
