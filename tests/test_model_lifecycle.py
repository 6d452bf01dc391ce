"""Model files are held to their registry hashes: verify re-reads every file, and llama.cpp only
opens a file whose sha256 matches (issue 16, item 5)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli.main import cli

BASE_ID = "plant-base"


def shifu(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def registered_base(kb_home: Path) -> Path:
    """A copy of the embedded GGUF registered (with its sha256) as the active base."""
    from models.registry import ModelEntry, Registry, embedded_model_path, file_sha256, save_registry

    path = kb_home / "models" / "plant-base.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(embedded_model_path(), path)
    entry = ModelEntry(id=BASE_ID, path=path, sha256=file_sha256(path), n_ctx=8192, quantization="Q4_1",
                       architecture="llama", languages=("en",))
    save_registry(Registry(bases=[entry], active_base=BASE_ID), kb_home / "models.toml")
    return path


def rot_in_place(path: Path) -> None:
    """One flipped byte in the tensor data; size and mtime put back as they were (bit rot, or a
    replacement made to look untouched)."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_same_size_same_mtime_replacement_is_caught_by_verify_and_load(kb_home: Path, registered_base: Path) -> None:
    from appliance.llm.llama_cpp import LlamaCppBackend
    from kb.errors import ModelError
    from models.registry import load_registry

    hashes = kb_home / "hashes.json"
    code, output = shifu("model", "verify", "--json")
    assert code == 0, output
    base = load_registry(kb_home / "models.toml").base()
    good = LlamaCppBackend(base, n_ctx=512, hash_cache=hashes)
    good.load()  # fills every cache the loader keeps
    assert good.info().base_sha256 == base.sha256
    good.close()

    rot_in_place(registered_base)
    code, output = shifu("model", "verify", "--json")
    checks = {c["id"]: c for c in json.loads(output)}
    assert code == 1 and not checks[BASE_ID]["ok"], output
    assert "does not match the registry" in checks[BASE_ID]["detail"]
    code, output = shifu("doctor", "--json")
    verify = next(c for c in json.loads(output)["checks"] if c["name"] == "verify")
    assert not verify["ok"] and "BAD" in verify["detail"] and BASE_ID in verify["detail"], verify

    with pytest.raises(ModelError, match="does not match its registry hash"):
        LlamaCppBackend(base, n_ctx=512, hash_cache=hashes).load()

    # The operator still gets the plant's procedure (a separate process: on a broken file a loader
    # that does not check could crash the interpreter).
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    result = subprocess.run([str(Path(sys.executable).parent / "shifu"), "ask", "A01", "--lang", "en", "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert answer["code"]["code"] == "A01" and answer["code"]["steps"]
    assert answer["model_available"] is False and answer["generated"] is None
    assert any("registry hash" in notice for notice in answer["notices"]), answer["notices"]


def test_doctor_shows_the_active_pair_and_the_last_verify(kb_home: Path, registered_base: Path) -> None:
    from models.registry import file_sha256

    code, output = shifu("doctor", "--json")
    verify = next(c for c in json.loads(output)["checks"] if c["name"] == "verify")
    assert verify["ok"] and "never verified" in verify["detail"]
    assert shifu("model", "verify")[0] == 0
    code, output = shifu("doctor", "--json")
    verify = next(c for c in json.loads(output)["checks"] if c["name"] == "verify")
    sha = file_sha256(registered_base)
    assert verify["ok"] and f"active pair {BASE_ID}" in verify["detail"], verify
    assert f"{BASE_ID} sha256 {sha[:16]} ok" in verify["detail"] and "last verify 20" in verify["detail"]


def test_doctor_reports_a_configured_model_as_unverified(kb_home: Path, registered_base: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFU_MODEL__PATH", str(registered_base))
    code, output = shifu("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(output)["checks"]}
    assert "UNVERIFIED" in checks["unverified"]["detail"] and str(registered_base) in checks["unverified"]["detail"]
