"""Power cuts during a bundle import (issue 16, item 6), on a file system that forgets what was not fsynced.

test_bundle_crash.py kills the importer with SIGKILL, which keeps the page cache: it cannot see a
rename or a write that never reached the disk. Here the appliance's state folder lives on
tests/dropfs.py, a FUSE layer that passes everything through but keeps aside only what was
fsynced (file bytes) and what was made durable by an fsync of its folder (entries, renames). The
importer (a real `shifu bundle import` of a real signed bundle) is killed right after each phase
is reported; then the file system itself is killed (the power cut) and the state is laid out as
a disk would have kept it. After `recover`, the old or the new version is active, its database
passes `PRAGMA integrity_check`, and a phase reported after the switch is never undone.

The KB database keeps its WAL mode (its shared memory is an mmap of a file on the FUSE mount,
which libfuse serves; it is rebuilt from the WAL after the cut anyway). Vectors are left out
(`retrieval.dense = false`): Chroma's index is a cache rebuilt from SQLite.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_tool
from dropfs import materialize
from test_bundle_crash import KILL_AFTER_PHASE, NEW_TITLE, assert_sound, kb_model_bundle, new_bundle, signer
from test_bundle_support import ORIGINAL_TITLE, context, trust

from kb.bundle.importer import PHASES, recover
from kb.versions import VersionStore

__all__ = ["kb_model_bundle", "new_bundle", "signer"]  # module fixtures shared with the SIGKILL test
DROPFS = Path(__file__).resolve().parent / "dropfs.py"


@pytest.fixture(scope="module")
def fuse_ready() -> None:
    require_tool("fusermount3")
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: the power-cut test needs FUSE")


def mounted(path: Path) -> bool:
    return os.path.ismount(path)


class DropFS:
    """tests/dropfs.py over `backing` at `mountpoint`; `cut()` is the power cut."""

    def __init__(self, backing: Path, mountpoint: Path, durable: Path) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mountpoint = mountpoint
        self.process = subprocess.Popen([sys.executable, str(DROPFS), str(backing), str(mountpoint), str(durable)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not mounted(mountpoint):
            assert self.process.poll() is None, self.process.stderr.read().decode() if self.process.stderr else ""
            assert time.monotonic() < deadline, "dropfs did not mount"
            time.sleep(0.05)

    def cut(self) -> None:
        self.process.send_signal(signal.SIGKILL)  # nothing flushed on the way out
        self.process.wait(timeout=30)
        subprocess.run(["umount", "-l", str(self.mountpoint)], check=False, capture_output=True)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("kind", ["kb", "kb+model"])
def test_power_cut_after_each_phase_keeps_the_old_or_the_new_version(
    kind: str, phase: str, tmp_path: Path, built_home: Path, signer: Path, new_bundle: Path,
    kb_model_bundle: Path, fuse_ready: None,
) -> None:
    """KB bundle: the old or the new version. KB+model bundle: the KB and the active pair together,
    and the registry never names a model file whose bytes did not survive."""
    import tomllib

    from models.registry import file_sha256

    backing, durable, after = tmp_path / "backing", tmp_path / "durable", tmp_path / "after"
    shutil.copytree(built_home, backing / "home", symlinks=True)
    trust(backing / "home", signer)
    (backing / "home" / "models.toml").write_text('active_base = "smollm2-135m-instruct-q4_1"\nactive_adapter = ""\n')
    before = (backing / "home" / "models.toml").read_bytes()
    bundle = kb_model_bundle if kind == "kb+model" else new_bundle
    mnt = tmp_path / "mnt"
    disk = DropFS(backing, mnt, durable)
    try:
        env = {**os.environ, "SHIFU_HOME": str(mnt / "home"), "SHIFU_RETRIEVAL__DENSE": "false"}
        child = subprocess.run([sys.executable, "-c", KILL_AFTER_PHASE, phase, "bundle", "import", str(bundle),
                                "--json"], env=env, capture_output=True, timeout=240)
        assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-3000:]
    finally:
        disk.cut()
    materialize(durable, after)
    home = after / "home"
    registry = home / "models.toml"
    recover(context(home, registry_file=registry))
    store = VersionStore(home / "kb")
    switched = PHASES.index(phase) >= PHASES.index("activated")
    assert store.current() == (2 if switched else 1)
    assert assert_sound(home) == (NEW_TITLE if switched else ORIGINAL_TITLE)
    assert not list((home / "staging").glob("import-*"))
    if kind == "kb" or not switched:
        assert registry.read_bytes() == before
        return
    data = tomllib.loads(registry.read_text())
    assert data["active_adapter"] == "line3-lora"
    entry = next(a for a in data["adapters"] if a["id"] == "line3-lora")
    survived = home / Path(entry["path"]).relative_to(mnt / "home")  # the registry names the mounted path
    assert file_sha256(survived) == entry["sha256"], "the registry names a model file that did not survive"
