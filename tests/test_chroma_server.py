"""Chroma in client/server mode: a real `chroma run` on 127.0.0.1 holds the vector index.

The server is the `chroma` command that ships in the chromadb package. Each KB version is
its own collection, filled from the embeddings in SQLite on first use; search through the
server ranks like the embedded index, and a server that is down only costs the dense
ranking (full-text search still answers, with a notice).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kb.search import dense
from tests.conftest import require_tool

CHROMA = Path(sys.executable).parent / "chroma"
SAMPLE_KB = Path(__file__).resolve().parent.parent / "kb" / "sample"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dense.ChromaServer]:
    require_tool("chroma")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen(
        [str(CHROMA if CHROMA.exists() else "chroma"), "run", "--path", str(data / "db"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc=proc)
        yield dense.ChromaServer("127.0.0.1", port, prefix="test", timeout_s=5.0)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        dense.configure(None)


def test_kb_is_searched_through_the_chroma_server(kb_home: Path, embedder, chroma_server) -> None:  # type: ignore[no-untyped-def]
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore

    version_dir = VersionStore(kb_home / "kb").current_path()
    embedded = KnowledgeBase(version_dir, embedder)
    expected = embedded.search("belt runs to one side", 5, mode="dense").passages
    embedded.close()

    # The embedded index is gone: only the server can answer dense queries now.
    shutil.rmtree(version_dir / "chroma")
    dense.configure(chroma_server)
    try:
        kbase = KnowledgeBase(version_dir, embedder)
        found = kbase.search("belt runs to one side", 5, mode="dense")
        hybrid = kbase.search("belt runs to one side", 5)
        kbase.close()
    finally:
        dense.configure(None)
    assert not found.notices, found.notices
    assert [p.id for p in found.passages] == [p.id for p in expected]
    assert hybrid.rankers.get("dense", 0) > 0 and not hybrid.notices  # the fused ranking used the server
    assert not (version_dir / "chroma").exists()  # nothing was written locally

    # One collection per KB version on the server, holding every stored vector.
    name = dense.collection_name(version_dir / "chroma", "test")
    listed = httpx.get(
        f"http://127.0.0.1:{chroma_server.port}/api/v2/tenants/default_tenant/databases/default_database/collections"
    ).json()
    assert name in [c["name"] for c in listed]
    assert name.startswith("test-v1-")
    assert dense.DenseIndex(version_dir / "chroma", chroma_server).count() == len(dense.stored_vectors(version_dir)[1])


def test_engine_uses_the_server_from_the_config(kb_home: Path, embedder, chroma_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`chroma.mode = "server"` in the config is all it takes; the engine finds passages through it."""
    from appliance import paths
    from appliance.config import load_settings
    from appliance.engine import Engine, Query
    from appliance.engine.factory import configure_chroma
    from kb.repair import check_index
    from kb.versions import VersionStore

    monkeypatch.setenv("SHIFU_CHROMA__MODE", "server")
    monkeypatch.setenv("SHIFU_CHROMA__PORT", str(chroma_server.port))
    monkeypatch.setenv("SHIFU_CHROMA__COLLECTION_PREFIX", "cfg")
    settings = load_settings()
    configure_chroma(settings)
    try:
        store = VersionStore(paths.kb_dir())
        shutil.rmtree(store.current_path() / "chroma")
        assert check_index(store.current_path()).problem is None  # the server's collection counts as the index
        engine = Engine(settings, store, embedder=embedder)
        answer = engine.answer(Query("conveyor belt drifts sideways", lang="en"), use_model=False)
        engine.close()
    finally:
        dense.configure(None)
    assert answer.passages
    assert any((p.evidence.dense_similarity or 0) > 0 for p in answer.passages)
    assert not [n for n in answer.notices if "vector" in n.lower()], answer.notices


def test_server_down_falls_back_to_full_text(kb_home: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore

    version_dir = VersionStore(kb_home / "kb").current_path()
    dense.configure(dense.ChromaServer("127.0.0.1", free_port(), timeout_s=1.0))
    try:
        kbase = KnowledgeBase(version_dir, embedder)
        started = time.monotonic()
        result = kbase.search("belt runs to one side", 5)
        elapsed = time.monotonic() - started
        kbase.close()
    finally:
        dense.configure(None)
    assert result.passages  # full-text search still answers
    assert result.notices, "the operator is told that dense search is missing"
    assert elapsed < 10


def test_a_new_kb_version_gets_its_own_collection(kb_home: Path, embedder, chroma_server) -> None:  # type: ignore[no-untyped-def]
    """Building a KB in server mode writes its collection on the server, not a local directory."""
    from kb.build import SourceSpec, build
    from kb.versions import VersionStore

    store = VersionStore(kb_home / "kb")
    before = dense.collection_name(store.current_path() / "chroma", "test")
    dense.configure(chroma_server)
    try:
        report = build([SourceSpec(SAMPLE_KB)], store, embedder)
        after = dense.collection_name(store.current_path() / "chroma", "test")
        count = dense.DenseIndex(store.current_path() / "chroma").count()
    finally:
        dense.configure(None)
    assert report.version == 2 and report.activated
    assert after != before and after.startswith("test-v2-")
    assert count == report.embedded + report.reused
    assert not (store.current_path() / "chroma").exists()
