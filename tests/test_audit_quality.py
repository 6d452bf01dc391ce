"""Each audit row says what the quality gate dropped and whether the model pair was verified.

The supervisor's report counts the gate's drops from these rows (issue 18), and a model loaded
from `model.path` in the configuration, with no registry hash, is named unverified in the
answer, its notices and its audit row (issue 16). The embedded model is checked against the
sha256 its package's RECORD lists.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from appliance.engine.types import Query
from tests.scripted import ScriptedModel

FRAGMENTS = ["1}", "⚠ {", "12"]
GOOD = ["Stop the conveyor and lock it out.", "Check the belt tension with the gauge."]


def _row(audit_id: int) -> dict[str, object]:
    from appliance import paths

    conn = sqlite3.connect(paths.ops_db())
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("SELECT * FROM audit WHERE id = ?", [audit_id]).fetchone())
    finally:
        conn.close()


def test_audit_row_counts_what_the_gate_dropped(engine) -> None:  # type: ignore[no-untyped-def]
    steps = [{"text": t, "cites": [1]} for t in [GOOD[0], *FRAGMENTS, GOOD[1]]]
    engine.set_backend(ScriptedModel({"summary": "{", "steps": steps, "safety": [], "parts": [], "escalate": False}))
    engine.use_cache = False
    answer = engine.answer(Query("A03", machine_id="CV-01", lang="en"))
    assert answer.generated is not None
    assert [s["text"] for s in answer.generated["steps"]] == GOOD
    row = _row(answer.audit_id)
    assert row["gate_dropped"] == len(FRAGMENTS) + 1  # the three fragments and the summary "{"
    assert row["model_verified"] is None  # the scripted model says nothing about verification

    answer = engine.answer(Query("A03", machine_id="CV-01", lang="en"), use_model=False)
    assert _row(answer.audit_id)["gate_dropped"] is None  # nothing was generated


def test_embedded_model_is_checked_against_its_package_record() -> None:
    from models.registry import embedded_entry, file_sha256

    entry = embedded_entry()
    assert len(entry.sha256) == 64 and entry.sha256 == file_sha256(entry.path)


def test_a_configured_model_file_is_named_unverified(kb_home: Path, settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from appliance import paths
    from appliance.engine import Engine
    from appliance.engine.factory import make_backend
    from appliance.store.opstore import OpStore
    from kb.versions import VersionStore
    from models.registry import embedded_model_path

    copy = tmp_path / "plant-base.gguf"
    shutil.copyfile(embedded_model_path(), copy)
    results = {}
    for name, model in (("registry", settings.model), ("configured", settings.model.model_copy(update={"path": copy}))):
        configured = settings.model_copy(update={"model": model})
        backend = make_backend(configured)
        opstore = OpStore(paths.ops_db())
        engine = Engine(configured, VersionStore(paths.kb_dir()), backend_factory=lambda b=backend: b,
                        opstore=opstore, embedder=embedder)
        engine.use_cache = False
        try:
            answer = engine.answer(Query("A01", machine_id="CV-01", lang="en"))
        finally:
            engine.close()
            opstore.close()
        assert answer.model_available, answer.notices
        results[name] = (answer.model["verified"], _row(answer.audit_id)["model_verified"],
                         any("unverified model" in n for n in answer.notices))
    assert results == {"registry": (True, 1, False), "configured": (False, 0, True)}
