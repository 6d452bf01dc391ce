"""`shifu doctor`: versions, config, KB, model and database health, one line each."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from appliance import paths
from appliance.config import Settings
from kb.errors import ShifuError


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def checks(settings: Settings, *, load_model: bool = False) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        results.append({"name": name, "ok": ok, "detail": detail})

    versions = {n: _version(n) for n in ("shifu", "llama-cpp-python", "chromadb", "sentence-transformers", "textual")}
    add("python", True, platform.python_version())
    add("packages", "missing" not in versions.values(), ", ".join(f"{k} {v}" for k, v in versions.items()))
    add("paths", True, f"config {paths.config_file()} · state {paths.state_dir()}")
    from kb.versions import VersionStore

    store = VersionStore(paths.kb_dir())
    try:
        from kb.reader import KnowledgeBase

        kbase = KnowledgeBase(store.current_path())
        counts = kbase.counts()
        add("kb", counts["codes"] + counts["chunks"] > 0,
            f"version {kbase.version} ({kbase.meta.get('name', '')}): {counts['codes']} codes, "
            f"{counts['records']} records, {counts['chunks']} passages; versions {store.versions()}")
        kbase.close()
    except ShifuError as error:
        add("kb", False, str(error))
    try:
        from models.registry import file_sha256, load_registry

        registry = load_registry(paths.models_toml())
        base = registry.base()
        sha = file_sha256(base.path, paths.state_dir() / "hashes.json") if base.path.exists() else "missing"
        matches = not base.sha256 or base.sha256 == sha
        add("model", base.path.exists() and matches,
            f"{base.id} {base.path} sha256 {sha[:16]}{'' if matches else ' (does not match registry)'}; "
            f"backend {settings.model.backend}, n_gpu_layers {settings.model.n_gpu_layers}")
        adapter = registry.adapter()
        if adapter is not None:
            add("adapter", adapter.path.exists(), f"{adapter.id} {adapter.path}")
    except ShifuError as error:
        add("model", False, str(error))
    try:
        from llama_cpp import llama_cpp as lib

        add("gpu", True, "CUDA offload available" if lib.llama_supports_gpu_offload() else "CPU only (no GPU offload)")
    except Exception as error:  # a broken llama.cpp build must still be reported
        add("gpu", False, f"llama.cpp unavailable: {error}")
    if load_model:
        from appliance.engine.factory import make_backend
        from appliance.llm.base import GenerateOptions

        try:
            backend = make_backend(settings)
            backend.load()
            text = "".join(backend.stream([{"role": "user", "content": "ok"}], GenerateOptions(max_tokens=2)))
            info = backend.info()
            add("generate", True, f"{info.base_id} on {info.device}: {text!r}")
        except ShifuError as error:
            add("generate", False, str(error))
    try:
        from appliance.store.opstore import OpStore

        store_db = OpStore(paths.ops_db())
        audit = store_db.rows("SELECT count(*) AS n FROM audit")[0]["n"]
        alarms = store_db.rows("SELECT count(*) AS n FROM alarms")[0]["n"]
        ok = store_db.rows("PRAGMA integrity_check")[0]
        store_db.close()
        add("database", list(ok.values())[0] == "ok", f"{paths.ops_db()}: {audit} audit rows, {alarms} alarms")
    except Exception as error:
        add("database", False, str(error))
    return results
