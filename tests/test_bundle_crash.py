"""Killed imports and pulled sticks: a killed import leaves the old or the new version active and sound.

SIGKILL keeps the page cache, so these tests cannot see a rename lost in a power cut; that the
renames are fsynced in order is checked by `test_bundle_fsync_order.py`, and real power cuts (on a
file system that forgets what was not fsynced) by `test_bundle_powercut.py`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gguf_adapters import write_adapter
from test_bundle_support import (
    ORIGINAL_TITLE,
    a01_title,
    context,
    edited_sample,
    make_bundle,
    make_key,
    trust,
)

from kb.bundle.importer import PHASES, ImportRefused, import_bundle, recover
from kb.bundle.state import ImportState
from kb.versions import DB_NAME, VersionStore

NEW_TITLE = "Drive motor overload (crash test)"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_key(tmp_path_factory.mktemp("engineer"))


@pytest.fixture(scope="module")
def new_bundle(tmp_path_factory: pytest.TempPathFactory, signer: Path, built_home: Path, embedder: Any) -> Path:
    work = tmp_path_factory.mktemp("crash")
    source = edited_sample(work / "src", NEW_TITLE)
    db = VersionStore(built_home / "kb").current_path() / DB_NAME
    return make_bundle(work / "bundle", signer, source=source, embedder=embedder, reuse_db=db)


def assert_sound(home: Path) -> str:
    """The active version opens, passes integrity_check and answers; return its A01 title."""
    store = VersionStore(home / "kb")
    path = store.current_path()
    conn = sqlite3.connect(f"file:{path / DB_NAME}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    return a01_title(home)


# `shifu bundle import` in a child that SIGKILLs itself right after the phase given as argv[1]
# is reported done: the crash comes from this harness, the product has no hook for it.
KILL_AFTER_PHASE = """
import os, signal, sys
import kb.bundle.importer as importer
reported = importer._phase
def phase(name, progress):
    reported(name, progress)
    if name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
importer._phase = phase
from appliance.cli.main import cli
cli(sys.argv[2:], prog_name="shifu")
"""


def start_import(home: Path, bundle: Path, crash_after: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SHIFU_HOME": str(home)}
    command = ["bundle", "import", str(bundle), "--json"]
    return subprocess.Popen([sys.executable, "-c", KILL_AFTER_PHASE, crash_after or "", *command],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def fresh_home(built_home: Path, target: Path, signer: Path) -> Path:
    shutil.copytree(built_home, target, symlinks=True)
    trust(target, signer)
    return target


@pytest.mark.parametrize("phase", PHASES)
def test_import_killed_after_each_phase_leaves_a_sound_kb(
    phase: str, tmp_path: Path, built_home: Path, signer: Path, new_bundle: Path
) -> None:
    home = fresh_home(built_home, tmp_path / "home", signer)
    process = start_import(home, new_bundle, phase)
    _out, err = process.communicate(timeout=180)
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]

    title = assert_sound(home)  # right after the kill, before any recovery
    switched = PHASES.index(phase) >= PHASES.index("activated")
    assert title == (NEW_TITLE if switched else ORIGINAL_TITLE)

    # The next start settles what the killed import left behind.
    recover(context(home))
    store = VersionStore(home / "kb")
    assert not list((home / "staging").glob("import-*"))
    assert not list(store.versions_dir.glob("*.building"))
    assert store.versions() == ([1, 2] if switched else [1])
    assert assert_sound(home) == title
    sequence = ImportState.load(home / "bundle-state.json").keys
    assert bool(sequence) == switched  # a switched version's sequence counts, an unswitched one does not


def test_import_killed_at_random_moments_then_retried(
    tmp_path: Path, built_home: Path, signer: Path, new_bundle: Path
) -> None:
    home = fresh_home(built_home, tmp_path / "home", signer)
    for delay in (0.8, 2.0, 3.5):
        process = start_import(home, new_bundle, None)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        assert assert_sound(home) in (ORIGINAL_TITLE, NEW_TITLE)
    # Whatever state the kills left, importing again ends in the new version (or a replay refusal
    # when the last kill came after the switch).
    process = start_import(home, new_bundle, None)
    out, err = process.communicate(timeout=180)
    assert process.returncode in (0, 1), err.decode()[-2000:]
    assert assert_sound(home) == NEW_TITLE
    assert not list((home / "staging").glob("import-*"))


@pytest.mark.parametrize("how", ["truncated", "removed"])
def test_stick_pulled_during_copy(how: str, kb_home: Path, tmp_path: Path, signer: Path, new_bundle: Path) -> None:
    trust(kb_home, signer)
    stick = tmp_path / "stick"
    shutil.copytree(new_bundle, stick)
    victim = next(stick.glob("kb-source/*/codes/cv200.csv"))

    def pull(path: str, _done: int, _total: int) -> None:
        if path.startswith("embeddings/") and victim.exists():  # copied first: the stick goes away after
            if how == "truncated":
                victim.write_bytes(victim.read_bytes()[:50])
            else:
                shutil.rmtree(stick / "kb-source")

    with pytest.raises(ImportRefused, match="stick was removed"):
        import_bundle(stick, context(kb_home, copy_progress=pull))
    assert VersionStore(kb_home / "kb").current() == 1
    assert assert_sound(kb_home) == ORIGINAL_TITLE
    assert not list((kb_home / "staging").glob("import-*"))


@pytest.fixture(scope="module")
def kb_model_bundle(tmp_path_factory: pytest.TempPathFactory, signer: Path, built_home: Path, embedder: Any) -> Path:
    """The new KB plus an adapter for the embedded base, activated on import."""
    from kb.build import SourceSpec
    from kb.bundle.pack import BundlePlan, ModelFile, build_bundle
    from models.registry import embedded_model_path, file_sha256

    work = tmp_path_factory.mktemp("crash-model")
    adapter = work / "line3-lora.gguf"
    write_adapter(adapter, embedded_model_path())
    plan = BundlePlan(sources=[SourceSpec(edited_sample(work / "src", NEW_TITLE))], label="kb+model",
                      model_label="lora", models=[ModelFile(file=adapter, id="line3-lora", kind="adapter",
                                                            base_sha256=file_sha256(embedded_model_path()),
                                                            activate=True)])
    db = VersionStore(built_home / "kb").current_path() / DB_NAME
    build_bundle(plan, work / "bundle", signer, embedder=embedder, reuse_db=db)
    return work / "bundle"


@pytest.mark.parametrize("phase", ["models", "activated"])
def test_kb_and_model_import_killed_keeps_kb_and_models_together(
    phase: str, tmp_path: Path, built_home: Path, signer: Path, kb_model_bundle: Path
) -> None:
    """Killed after the registry changed: before the switch, the recovery puts the registry back
    (old KB, old pair); after it, the new KB comes with the new adapter."""
    import tomllib

    home = fresh_home(built_home, tmp_path / "home", signer)
    registry = home / "models.toml"
    registry.write_text('active_base = "smollm2-135m-instruct-q4_1"\nactive_adapter = ""\n')
    before = registry.read_bytes()
    process = start_import(home, kb_model_bundle, phase)
    _out, err = process.communicate(timeout=180)
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]

    recover(context(home, registry_file=registry))
    switched = phase == "activated"
    assert assert_sound(home) == (NEW_TITLE if switched else ORIGINAL_TITLE)
    if switched:
        assert tomllib.loads(registry.read_text())["active_adapter"] == "line3-lora"
    else:
        assert registry.read_bytes() == before, "the adapter stayed active although its KB was never switched to"
