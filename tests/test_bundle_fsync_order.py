"""Durability in order (issue 16, item 6): during a KB + model import, every rename that makes
state visible is followed by an fsync of its folder before the importer reports that phase done.

A rename lives in its directory's data: without that fsync a power cut can bring back the old
name after the phase was reported (and a crash test with SIGKILL cannot see it: the page cache
survives a killed process).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from gguf_adapters import write_adapter
from test_bundle_support import context, current_db, edited_sample, make_key, trust

from kb.build import SourceSpec


def test_each_rename_is_fsynced_before_its_phase_is_reported(
    kb_home: Path, tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance import paths
    from appliance.cli.bundle_cmd import register_models
    from kb.bundle.importer import PHASES, import_bundle
    from kb.bundle.pack import BundlePlan, ModelFile, build_bundle
    from models.registry import embedded_model_path, file_sha256

    key = make_key(tmp_path / "engineer")
    trust(kb_home, key)
    adapter = tmp_path / "line3-lora.gguf"
    write_adapter(adapter, embedded_model_path())
    plan = BundlePlan(sources=[SourceSpec(edited_sample(tmp_path / "src", "Drive motor overload (fsync)"))],
                      label="fsync order", model_label="lora",
                      models=[ModelFile(file=adapter, id="line3-lora", kind="adapter",
                                        base_sha256=file_sha256(embedded_model_path()), activate=True)])
    bundle = tmp_path / "bundle"
    build_bundle(plan, bundle, key, embedder=embedder, reuse_db=current_db(kb_home))

    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def rename(src: Any, dst: Any, **kw: Any) -> None:
        real_rename(src, dst, **kw)
        events.append(("rename", os.path.abspath(dst)))

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        real_replace(src, dst, **kw)
        events.append(("rename", os.path.abspath(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    ctx = context(kb_home, embedder, register_models=register_models, models_dir=paths.models_dir(),
                  progress=lambda message: events.append(("progress", message)))
    result = import_bundle(bundle, ctx)
    assert result.version == 2 and result.models == ["line3-lora"]

    unsynced: dict[str, str] = {}  # folder -> the last rename in it not yet fsynced
    reported = []
    for kind, what in events + [("progress", "phase (import returned)")]:
        if kind == "rename":
            unsynced[os.path.dirname(what)] = what
        elif kind == "fsync":
            unsynced.pop(what, None)
        elif what.startswith("phase "):
            reported.append(what.removeprefix("phase "))
            assert not unsynced, f"phase '{reported[-1]}' reported before these renames were fsynced: {unsynced}"
    assert reported[:-1] == list(PHASES)
    renamed = {what for kind, what in events if kind == "rename"}
    for visible in (kb_home / "kb/versions/2", kb_home / "kb/current", paths.models_toml(),
                    kb_home / "bundle-state.json"):
        assert str(visible) in renamed, f"{visible} was not put in place by a rename: {sorted(renamed)}"
