"""Shared fixtures: a temporary SHIFU_HOME, the sample KB built once, one loaded model.

Everything is real: the sample KB is built with the real sentence-transformers model into
real SQLite + Chroma, and the model is the embedded SmolLM2 GGUF through llama-cpp-python.
Expensive things are session-scoped; tests that change state get their own SHIFU_HOME.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"

REPO = Path(__file__).resolve().parent.parent
SAMPLE_KB = REPO / "kb" / "sample"
DATA = Path(__file__).resolve().parent / "data"
GRBL = REPO.parent / "shared" / "corpora" / "grbl"


def require_tool(name: str) -> str:
    """The path of a command a test drives; skip without it, but fail under CI=true.

    `make setup` installs every system tool the tests use (the Makefile's TOOLS), so a missing
    one in CI is a broken set-up, never a reason to pass quietly. The venv's own commands
    (chroma) and /usr/sbin (mosquitto) are searched as well as PATH.
    """
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        message = f"{name} is not installed; `make setup` installs it"
        if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return path


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from kb.embed import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    model.load()
    return model


@pytest.fixture(scope="session")
def built_home(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:  # type: ignore[no-untyped-def]
    """A SHIFU_HOME holding the sample KB as version 1 (treat as read-only; copy it to change it)."""
    from kb.build import SourceSpec, build
    from kb.versions import VersionStore

    home = tmp_path_factory.mktemp("built_home")
    build([SourceSpec(SAMPLE_KB)], VersionStore(home / "kb"), embedder)
    return home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty SHIFU_HOME for this test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("SHIFU_HOME", str(path))
    return path


@pytest.fixture
def kb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, built_home: Path) -> Path:
    """A private copy of the built sample KB as SHIFU_HOME (safe to change)."""
    path = tmp_path / "kb_home"
    shutil.copytree(built_home, path, symlinks=True)
    monkeypatch.setenv("SHIFU_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def llm_backend():  # type: ignore[no-untyped-def]
    """The embedded model, loaded once for the whole session."""
    from appliance.llm.llama_cpp import LlamaCppBackend
    from models.registry import embedded_entry

    backend = LlamaCppBackend(embedded_entry(), n_ctx=4096)
    backend.load()
    yield backend
    backend.close()


@pytest.fixture
def settings(kb_home: Path):  # type: ignore[no-untyped-def]
    from appliance.config import load_settings

    return load_settings()


@pytest.fixture
def engine(kb_home: Path, settings, llm_backend, embedder) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """An engine over a private copy of the sample KB, sharing the session's model."""
    from appliance import paths
    from appliance.engine import Engine
    from appliance.store.opstore import OpStore
    from kb.versions import VersionStore

    opstore = OpStore(paths.ops_db())
    eng = Engine(settings, VersionStore(paths.kb_dir()), backend_factory=lambda: llm_backend,
                 opstore=opstore, embedder=embedder)
    yield eng
    eng.close(backend=False)  # the session's model stays loaded; the KB's files are released
    opstore.close()
