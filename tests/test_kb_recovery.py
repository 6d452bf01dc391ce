"""A damaged vector index is rebuilt from SQLite while answers keep coming (FTS only);
a failed self-test leaves the previous version active; rollback goes back a version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kb.errors import KBError
from kb.reader import KnowledgeBase
from kb.versions import VersionStore

FALLBACK = "vector index unavailable; full-text search only"


def _store(home: Path) -> VersionStore:
    return VersionStore(home / "kb")


def _damage(index_dir: Path, how: str) -> None:
    if how == "deleted":
        shutil.rmtree(index_dir)
    else:
        (index_dir / "chroma.sqlite3").write_bytes(b"this is not a database" * 64)


@pytest.mark.parametrize("how", ["deleted", "corrupt"])
def test_damaged_index_falls_back_to_fts_then_is_rebuilt(kb_home: Path, embedder, how: str) -> None:  # type: ignore[no-untyped-def]
    from kb.repair import check_index, repair_current

    store = _store(kb_home)
    version_dir = store.current_path()
    _damage(version_dir / "chroma", how)
    assert check_index(version_dir).problem is not None

    kbase = KnowledgeBase(version_dir, embedder)
    try:
        degraded = kbase.search("belt slips on the drive pulley", 5)
        assert FALLBACK in degraded.notices
        assert degraded.passages and "dense" not in degraded.rankers  # answers keep working, FTS only

        written = repair_current(store)
        assert written == kbase.counts()["embeddings"] > 0
        assert check_index(version_dir).problem is None

        healed = kbase.search("belt slips on the drive pulley", 5)  # the same open KB recovers
        assert healed.notices == [] and healed.rankers["dense"] > 0
    finally:
        kbase.close()
    fresh = KnowledgeBase(version_dir, embedder)
    try:
        assert fresh.search("belt slips on the drive pulley", 5).notices == []
    finally:
        fresh.close()


def test_healthy_index_is_left_alone(kb_home: Path) -> None:
    from kb.repair import repair_index

    version_dir = _store(kb_home).current_path()
    before = (version_dir / "chroma").stat().st_ino  # a rebuild replaces the directory
    assert repair_index(version_dir) == 0
    assert (version_dir / "chroma").stat().st_ino == before


def test_background_repair_reports_completion(kb_home: Path) -> None:
    from kb.repair import check_index, repair_in_background

    version_dir = _store(kb_home).current_path()
    shutil.rmtree(version_dir / "chroma")
    outcome: list[Exception | None] = []
    repair_in_background(version_dir, outcome.append).join(timeout=120)
    assert outcome == [None] and check_index(version_dir).problem is None


def _tiny_source(root: Path, text: str) -> Path:
    source = root / "tiny"
    (source / "manuals").mkdir(parents=True)
    (source / "manuals" / "note.md").write_text(f"# Night shift notes\n\n{text}\n")
    return source


def test_failed_self_test_keeps_the_previous_version(kb_home: Path, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from kb.build import SourceSpec, build

    store = _store(kb_home)
    assert store.current() == 1

    def broken(_staged: Path) -> None:
        raise KBError("self-test: sample query found nothing")

    with pytest.raises(KBError, match="sample query found nothing"):
        build([SourceSpec(_tiny_source(tmp_path, "Feeder jams twice a night."))], store, embedder, self_test=broken)
    assert store.current() == 1 and store.versions() == [1]
    assert not list(store.versions_dir.glob("*.building"))
    kbase = KnowledgeBase(store.current_path())
    try:
        assert kbase.lookup("A01", lang="en").entry is not None  # the sample KB still answers
    finally:
        kbase.close()


def test_rollback_from_the_cli(kb_home: Path, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from appliance.cli.main import cli
    from kb.build import SourceSpec, build

    store = _store(kb_home)
    report = build([SourceSpec(_tiny_source(tmp_path, "Feeder jams twice a night."))], store, embedder)
    assert report.activated and store.current() == 2

    runner = CliRunner()
    result = runner.invoke(cli, ["kb", "rollback", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"current": 1}
    versions = json.loads(runner.invoke(cli, ["kb", "versions", "--json"]).output)
    assert versions == {"current": 1, "versions": [1, 2]}
    kbase = KnowledgeBase(store.current_path())
    try:
        assert kbase.lookup("A01", lang="en").entry is not None
        assert not any(p.source == "note.md" for p in kbase.search("feeder jams", 5, mode="fts").passages)
    finally:
        kbase.close()
    again = runner.invoke(cli, ["kb", "rollback", "2", "--json"])
    assert json.loads(again.output) == {"current": 2}


def test_opening_the_kb_only_opens_and_warm_up_starts_the_rebuild_once(kb_home: Path, settings, embedder,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`Engine.kb()` is a plain getter; the check (and the rebuild of a broken index) is its own
    step, run at warm-up and on a question, once per KB version."""
    from appliance.engine import Engine
    from appliance.engine.local import LocalClient
    from appliance.engine.types import Query

    store = _store(kb_home)
    current = store.current()
    assert current is not None
    _damage(store.path(current) / "chroma", "deleted")
    started: list[Path] = []
    monkeypatch.setattr("appliance.engine.engine.repair_in_background", lambda path: started.append(path))
    engine = Engine(settings, store, embedder=embedder)
    try:
        engine.kb()
        engine.kb()
        assert started == [], "opening the KB does not repair it"
        LocalClient(engine).warm()
        assert started == [store.path(current)]
        answer = engine.answer(Query("belt slipping", lang="en"), use_model=False)
        assert answer.passages and started == [store.path(current)], "checked once per version"
    finally:
        engine.close()
