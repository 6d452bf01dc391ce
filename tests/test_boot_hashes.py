"""Hashing once per boot in a root step (issue 16, item 5): `shifu model verify --boot` reads every
registered file in full and writes what matched into a per-boot file that only its owner can
write; the loader (running as the service account on the appliance) takes the hash from there
instead of reading 4.7 GB again, but never from a file others could write, and never for a file
changed since the step hashed it.

Real parts: a copy of the embedded GGUF registered with its sha256, the CLI, llama.cpp loading it.
Counting full reads is done by wrapping models.registry's reader: that is what the cache saves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kb.errors import ModelError


@pytest.fixture
def registered(home: Path) -> Path:
    from appliance import paths
    from models.registry import ModelEntry, Registry, embedded_entry, file_sha256, save_registry

    copy = home / "models" / "plant-base.gguf"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(embedded_entry().path, copy)
    entry = ModelEntry(**{**embedded_entry().__dict__, "id": "plant-base", "path": copy, "sha256": file_sha256(copy)})
    save_registry(Registry(bases=[entry], active_base="plant-base"), paths.models_toml())
    return copy


def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import models.registry as registry

    reads: list[int] = []
    real = registry._read_sha256

    def counted(fd: int) -> str:
        reads.append(fd)
        return real(fd)

    monkeypatch.setattr(registry, "_read_sha256", counted)
    return reads


def load() -> None:
    from appliance import paths
    from appliance.llm.llama_cpp import LlamaCppBackend
    from models.registry import load_registry

    backend = LlamaCppBackend(load_registry(paths.models_toml()).base(), n_ctx=256, boot_hashes=paths.boot_hash_file())
    try:
        backend.load()
    finally:
        backend.close()


def boot_step() -> None:
    from appliance.cli.main import cli

    result = CliRunner().invoke(cli, ["model", "verify", "--boot"])
    assert result.exit_code == 0, result.output


def test_the_loader_takes_the_boot_steps_hash_instead_of_reading_the_file(
    registered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance import paths

    boot_step()
    assert paths.boot_hash_file().is_file() and not (paths.state_dir() / "hashes.json").exists()
    reads = full_reads(monkeypatch)
    load()
    assert reads == [], "the model file was read in full although the boot step had hashed it"


def test_a_boot_file_others_can_write_is_not_trusted(registered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance import paths

    boot_step()
    os.chmod(paths.boot_hash_file(), 0o666)
    reads = full_reads(monkeypatch)
    load()
    assert len(reads) == 1


def test_a_file_changed_after_the_boot_step_is_read_again_and_refused(
    registered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot_step()
    before = os.stat(registered)
    with open(registered, "r+b") as handle:  # same size, same mtime: only ctime tells
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(registered, ns=(before.st_atime_ns, before.st_mtime_ns))
    reads = full_reads(monkeypatch)
    with pytest.raises(ModelError, match="does not match its registry hash"):
        load()
    assert len(reads) == 1


def test_the_root_step_unit_verifies_and_its_exposure(tmp_path: Path) -> None:
    """Root with CAP_DAC_READ_SEARCH only (to read the `shifu` state folder), read-only everywhere but
    /run/shifu-hashes, pulled in before every service that loads the model."""
    import subprocess

    from conftest import REPO, require_tool

    analyze = require_tool("systemd-analyze")
    units = REPO / "systemd" / "units"
    root = tmp_path / "root"
    shutil.copytree(units, root / "etc/systemd/system")
    (root / "opt/shifu/bin").mkdir(parents=True)
    (root / "opt/shifu/bin/shifu").write_text("#!/bin/sh\n")
    os.chmod(root / "opt/shifu/bin/shifu", 0o755)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    unit = "shifu-model-hash.service"
    verify = subprocess.run([analyze, "verify", f"--root={root}", unit], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run([analyze, "security", "--offline=yes", f"--root={root}", unit], capture_output=True,
                              text=True, timeout=120)
    overall = next(line for line in security.stdout.splitlines() if "Overall exposure level" in line)
    print(overall)
    assert float(overall.split(":")[1].split()[0]) <= 0.9, overall
    text = (units / unit).read_text()
    assert "CapabilityBoundingSet=CAP_DAC_READ_SEARCH\n" in text and "ReadWritePaths" not in text
    for service in ("shifu-kiosk.service", "shifu-serve.service", "shifu-intake.service"):
        lines = (units / service).read_text().splitlines()
        assert f"Wants={unit}" in lines and f"After={unit}" in lines, service


def test_doctor_shows_the_boot_steps_verify(registered: Path) -> None:
    import json

    from appliance.cli.main import cli
    from models.registry import file_sha256

    boot_step()
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    verify = next(c for c in json.loads(result.output)["checks"] if c["name"] == "verify")
    assert verify["ok"] and f"plant-base sha256 {file_sha256(registered)[:16]} ok" in verify["detail"], verify
    assert "never verified" not in verify["detail"] and "earlier boot" not in verify["detail"]
