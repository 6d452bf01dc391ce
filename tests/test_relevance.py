"""The "not in the knowledge base" decision reads the evidence that exists, in every retrieval mode.

Dense on, dense off, the vector index being repaired, the Chroma server down; in both
languages: a symptom with a relevant passage is answered (not refused), an unknown code with
nothing relevant is refused. The decision is made without the model too (`--no-llm`).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.engine import Engine, Query
from kb.reader import KnowledgeBase
from kb.search import dense
from kb.search.calibrate import OFF_DOMAIN, best_score
from tests.conftest import GRBL

SYMPTOMS = {"en": "belt squeals when starting", "zh-TW": "皮帶打滑"}
UNKNOWN = {"en": "ZQ-9999", "zh-TW": "ZQ-9999 這是什麼"}
MODES = ["dense", "fts", "repairing", "server-down"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=MODES)
def mode_engine(request, kb_home: Path, settings, embedder, monkeypatch) -> Iterator[tuple[str, Engine]]:  # type: ignore[no-untyped-def]
    from appliance import paths
    from kb.versions import VersionStore

    mode = request.param
    versions = VersionStore(paths.kb_dir())
    if mode == "fts":
        settings.retrieval.dense = False
    if mode == "repairing":
        current = versions.current()
        assert current is not None
        shutil.rmtree(versions.path(current) / "chroma")
        started: list[Path] = []
        # The repair "is running" for the whole test: searches meanwhile use full text alone.
        monkeypatch.setattr("appliance.engine.engine.repair_in_background", lambda path: started.append(path))
    if mode == "server-down":
        dense.configure(dense.ChromaServer("127.0.0.1", _free_port(), "shifu", 0.5))
    engine = Engine(settings, versions, embedder=embedder)
    try:
        yield mode, engine
    finally:
        dense.configure(None)
        engine.close()


@pytest.mark.parametrize("lang", ["en", "zh-TW"])
def test_symptom_with_a_relevant_passage_is_answered_in_every_mode(mode_engine, lang: str) -> None:
    mode, engine = mode_engine
    answer = engine.answer(Query(SYMPTOMS[lang], lang=lang), use_model=False)
    assert answer.passages, mode
    used = {p.evidence.mode for p in answer.passages}
    assert used == ({"hybrid"} if mode == "dense" else {"fts"}), (mode, used)
    if mode != "dense":
        assert all(p.evidence.dense_similarity is None for p in answer.passages)
    assert answer.refused is False, (mode, lang, [p.evidence for p in answer.passages[:3]])
    assert any("belt" in p.text.lower() or "皮帶" in p.text for p in answer.passages[:3])


@pytest.mark.parametrize("lang", ["en", "zh-TW"])
def test_unknown_code_with_nothing_relevant_is_refused_in_every_mode(mode_engine, lang: str) -> None:
    mode, engine = mode_engine
    answer = engine.answer(Query(UNKNOWN[lang], lang=lang), use_model=False)
    assert answer.code is None
    assert answer.refused is True, (mode, lang, [p.evidence for p in answer.passages[:3]])
    assert answer.to_json()["generated"] is None


def test_passages_carry_their_own_evidence(engine) -> None:
    answer = engine.answer(Query("belt squeals when starting", lang="en"), use_model=False)
    data = answer.to_json()["passages"]
    assert all(set(p["evidence"]) == {"mode", "fts_rank", "fts_score", "dense_similarity", "fts_coverage"}
               for p in data)
    assert all(0.0 <= p["evidence"]["fts_coverage"] <= 1.0 for p in data)
    ranked = [p["evidence"] for p in data if p["evidence"]["fts_rank"] is not None]
    assert ranked and all(e["fts_score"] > 0 for e in ranked)
    assert any(p["evidence"]["dense_similarity"] is not None for p in data)


def _check_calibration(kb: KnowledgeBase, relevant: list[str]) -> None:
    threshold = kb.fts_threshold
    assert threshold > 0
    for text in OFF_DOMAIN:
        assert best_score(kb.conn, text) < threshold, text
    for text in relevant:
        assert best_score(kb.conn, text) >= threshold, text


def test_calibration_on_the_sample_kb(engine) -> None:
    kb = engine.kb()
    assert "fts_calibration" in kb.meta
    _check_calibration(kb, ["belt squeals when starting", "皮帶打滑", "皮帶異音", "spindle overheats", "模具溫度太高"])


@pytest.fixture(scope="module")
def grbl_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    from kb.build import SourceSpec, build
    from kb.versions import VersionStore

    store = VersionStore(tmp_path_factory.mktemp("grbl") / "kb")
    mapping = Path(__file__).resolve().parent.parent / "kb" / "mappings" / "grbl.toml"
    build([SourceSpec(GRBL, mapping)], store, None)
    current = store.current()
    assert current is not None
    kb = KnowledgeBase(store.path(current))
    yield kb
    kb.close()


def test_calibration_on_the_grbl_corpus(grbl_kb: KnowledgeBase) -> None:
    kb = grbl_kb
    _check_calibration(kb, ["homing cycle failed", "soft limit alarm", "probe fail", "spindle speed"])
    assert kb.fts_threshold != pytest.approx(0.0)


NEAR_MISSES = [("A13", "en"), ("E-299", "zh-TW"), ("error 22", "en"), ("AL-1009 是什麼", "zh-TW")]


@pytest.mark.parametrize(("text", "lang"), NEAR_MISSES)
def test_a_code_not_in_the_table_is_refused_although_passages_look_alike(mode_engine, text: str, lang: str) -> None:
    """An operator's typo (A13 for A03, error 22) must not get the nearest passages as its procedure:
    passages about other codes share the words ("error", "alarm") and look relevant."""
    mode, engine = mode_engine
    answer = engine.answer(Query(text, lang=lang), use_model=False)
    assert answer.code is None
    assert answer.passages or mode != "dense", "dense search always finds look-alikes: the case this test is for"
    assert answer.refused is True, (mode, text, [(p.section, p.evidence) for p in answer.passages[:3]])


def test_a_code_a_manual_names_is_answered_from_that_manual(mode_engine) -> None:
    mode, engine = mode_engine
    answer = engine.answer(Query("UCP206", lang="en"), use_model=False)  # a bearing the CV-200 manual names
    assert answer.code is None and answer.refused is False, (mode, [p.section for p in answer.passages[:3]])
    assert any("UCP206" in p.text for p in answer.passages)
