"""Model bundles held to the KB's standard (issue 16, item 3): an adapter only for a registered
base, a registry written durably, and all or nothing when a later part of the bundle fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gguf_adapters import write_adapter
from test_bundle_support import SAMPLE_KB, context

from kb.build import SourceSpec
from models.registry import embedded_model_path


def embedded_sha256() -> str:
    from models.registry import embedded_model_path, file_sha256

    return file_sha256(embedded_model_path())


def adapter_bundle(tmp_path: Path, key: Path, base_sha256: str, *, with_kb: bool = False) -> Path:
    from kb.bundle.pack import BundlePlan, ModelFile, build_bundle

    adapter = tmp_path / "line3-lora.gguf"
    write_adapter(adapter, embedded_model_path())
    plan = BundlePlan(sources=[SourceSpec(SAMPLE_KB)] if with_kb else [], label="June",
                      models=[ModelFile(file=adapter, id="line3-lora", kind="adapter", base_sha256=base_sha256,
                                        activate=True)], model_label="lora 2026-06")
    out = tmp_path / ("kb-model-bundle" if with_kb else "model-bundle")
    build_bundle(plan, out, key)
    return out


def trusted_key(home: Path, tmp_path: Path) -> Path:
    from kb.bundle.sign import keygen

    pair = keygen(tmp_path / "engineer")
    (home / "keys").mkdir(parents=True, exist_ok=True)
    (home / "keys" / "shifu.pub").write_bytes(pair.public_path.read_bytes())
    return pair.private_path


def registry_now(home: Path) -> bytes:
    """The registry file as the appliance has it before an import (the embedded base active)."""
    from models.registry import ModelEntry, Registry, embedded_entry, save_registry

    base = embedded_entry()
    entry = ModelEntry(**{**base.__dict__, "id": "plant-base", "sha256": embedded_sha256()})
    save_registry(Registry(bases=[entry], active_base="plant-base"), home / "models.toml")
    return (home / "models.toml").read_bytes()


def test_registry_is_fsynced_before_and_after_its_rename(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.registry import Registry, embedded_entry, save_registry

    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    def rename(src: str | Path, dst: str | Path) -> None:
        events.append(("rename", str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    path = home / "models.toml"
    save_registry(Registry(bases=[embedded_entry()], active_base=embedded_entry().id), path)
    renames = [n for n, (what, target) in enumerate(events) if what == "rename" and target == str(path)]
    assert len(renames) == 1, events
    before, after = events[: renames[0]], events[renames[0] + 1 :]
    assert any(what == "fsync" and target.startswith(str(home) + "/") for what, target in before), events
    assert ("fsync", str(home)) in after, f"the directory is not fsynced after the rename: {events}"


def test_adapter_for_another_base_is_refused_and_the_registry_untouched(home: Path, tmp_path: Path) -> None:
    from appliance import paths
    from appliance.cli.bundle_cmd import register_models
    from kb.bundle.importer import ImportRefused, import_bundle

    key = trusted_key(home, tmp_path)
    before = registry_now(home)
    bundle = adapter_bundle(tmp_path, key, "ab" * 32)
    with pytest.raises(ImportRefused, match="trained for a base"):
        import_bundle(bundle, context(home, register_models=register_models, models_dir=paths.models_dir()))
    assert paths.models_toml().read_bytes() == before


def test_registry_rolled_back_when_the_kb_part_fails_its_health_check(
    kb_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance import paths
    from appliance.cli.bundle_cmd import register_models
    from kb.bundle.importer import ImportRefused, import_bundle
    from kb.errors import KBError
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore

    key = trusted_key(kb_home, tmp_path)
    before = registry_now(kb_home)
    bundle = adapter_bundle(tmp_path, key, embedded_sha256(), with_kb=True)

    def broken(_self: KnowledgeBase) -> list[str]:
        raise KBError("the new version's index cannot be read (simulated)")

    monkeypatch.setattr(KnowledgeBase, "known_keys", broken)
    with pytest.raises(ImportRefused, match="health check"):
        import_bundle(bundle, context(kb_home, register_models=register_models, models_dir=paths.models_dir()))
    assert VersionStore(kb_home / "kb").current() == 1
    assert paths.models_toml().read_bytes() == before, "the adapter stayed active although the import failed"
