"""Passphrase keys and the sequence counter, model bundles, loop-data export, backup and restore."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from gguf_adapters import write_adapter
from test_bundle_support import SAMPLE_KB, context

from appliance.cli.main import cli


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env=env).invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_passphrase_key_and_growing_sequence(home: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    secret = {"SIGN_PASS": "correct horse"}
    assert run("bundle", "keygen", "--out", str(keys), "--passphrase-env", "SIGN_PASS", env=secret)[0] == 0
    assert b"ENCRYPTED" in (keys / "shifu.key").read_bytes()
    common = ["bundle", "build", str(SAMPLE_KB), "--sign", str(keys / "shifu.key"), "--no-embeddings", "--json"]

    code, _, err = run(*common, "--out", str(tmp_path / "b0"))
    assert code == 1 and "passphrase-protected" in err
    code, _, err = run(*common, "--out", str(tmp_path / "b0"), "--passphrase-env", "SIGN_PASS",
                       env={"SIGN_PASS": "wrong"})
    assert code == 1 and "wrong passphrase" in err
    assert not (tmp_path / "b0").exists()  # nothing written before the key is unlocked

    sequences = []
    for n in (1, 2):
        code, out, err = run(*common, "--out", str(tmp_path / f"b{n}"), "--passphrase-env", "SIGN_PASS", env=secret)
        assert code == 0, err
        sequences.append(json.loads(out)["sequence"])
    assert sequences == [1, 2]
    code, out, _ = run("bundle", "verify", str(tmp_path / "b2"), "--key", str(keys / "shifu.pub"), "--json")
    assert code == 0 and json.loads(out)["sequence"] == 2


def test_model_bundle_installs_file_and_registry_entry(home: Path, tmp_path: Path) -> None:
    from appliance import paths
    from appliance.cli.bundle_cmd import register_models
    from kb.bundle.importer import import_bundle
    from kb.bundle.pack import BundlePlan, ModelFile, build_bundle
    from kb.bundle.sign import keygen
    from models.registry import embedded_model_path, file_sha256

    pair = keygen(tmp_path / "keys")
    paths.keys_dir().mkdir(parents=True)
    (paths.keys_dir() / "shifu.pub").write_bytes(pair.public_path.read_bytes())
    adapter = tmp_path / "line3-lora.gguf"
    write_adapter(adapter, embedded_model_path())
    base_sha = file_sha256(embedded_model_path())  # an adapter is accepted only for a registered base
    plan = BundlePlan(models=[ModelFile(file=adapter, id="line3-lora", kind="adapter", base_sha256=base_sha,
                                        activate=True)], model_label="lora 2025-06")
    build_bundle(plan, tmp_path / "bundle", pair.private_path)

    result = import_bundle(tmp_path / "bundle", context(home, register_models=register_models,
                                                       models_dir=paths.models_dir()))
    assert result.kind == "model" and result.models == ["line3-lora"] and result.version is None
    registry = tomllib.loads(paths.models_toml().read_text())
    assert registry["active_adapter"] == "line3-lora"
    entry = registry["adapters"][0]
    assert Path(entry["path"]).read_bytes() == adapter.read_bytes() and entry["base_sha256"] == base_sha


@pytest.fixture
def loop_data(home: Path) -> Path:
    from appliance import paths
    from appliance.store.opstore import OpStore

    store = OpStore(paths.ops_db())
    audit = store.write_audit({"query": "A01 皮帶停了", "lang": "zh-TW", "kb_version": 1, "code": {"code": "A01"},
                               "passages": [{"id": "c1"}, {"id": "c2"}], "generated": "先上鎖掛牌",
                               "model_available": True, "timings_ms": {"total": 12}, "machine_model": "CV-200",
                               "model": {"base": "plant-base", "verified": False}}, source="kiosk", gate_dropped=2)
    store.add_feedback(audit, "fixed", "op-7")
    store.add_feedback(audit, "call_technician", "op-8")  # drafts a work order
    store.add_alarm(port="/dev/ttyUSB0", machine_id="CV-01", raw="ALM A01", code="A01", normalized="a01",
                    message="overload")
    store.close()
    return home


def test_export_writes_documented_columns_as_csv_and_jsonl(loop_data: Path, tmp_path: Path) -> None:
    from appliance.store.export import TABLES

    stick = tmp_path / "stick"
    stick.mkdir()
    code, out, err = run("export", str(stick), "--json")
    assert code == 0, err
    folder = Path(json.loads(out)["path"])
    assert json.loads(out)["counts"] == {"audit": 1, "feedback": 2, "alarms": 1, "work_orders": 1}
    for table, (_time, columns) in TABLES.items():
        with open(folder / f"{table}.csv", encoding="utf-8", newline="") as handle:
            assert next(csv.reader(handle)) == columns
        rows = [json.loads(line) for line in (folder / f"{table}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert list(rows[0]) == columns
    audit = json.loads((folder / "audit.jsonl").read_text(encoding="utf-8"))
    assert audit["query"] == "A01 皮帶停了" and audit["passage_ids"] == ["c1", "c2"] and audit["model_available"] is True
    assert (audit["machine_model"], audit["refused"], audit["likely_codes"]) == ("CV-200", False, [])
    assert (audit["gate_dropped"], audit["model_verified"]) == (2, False)  # an unverified pair is named so
    feedback = json.loads((folder / "feedback.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert feedback["audit_id"] == audit["id"] and feedback["verdict"] == "fixed"
    order = json.loads((folder / "work_orders.jsonl").read_text(encoding="utf-8"))
    assert (order["code"], order["operator"], order["audit_id"]) == ("A01", "op-8", audit["id"])
    assert [t["verdict"] for t in order["tried"]] == ["fixed"] and order["generated"] == "先上鎖掛牌"
    assert not list(stick.glob(".*partial"))


def test_backup_and_restore_on_a_replacement_pc(loop_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (loop_data / "keys").mkdir()
    (loop_data / "keys" / "plant.pub").write_text("-----BEGIN PUBLIC KEY-----\n")
    (loop_data / "shifu.toml").write_text('[general]\nlang = "en"\n')
    (loop_data / "bundle-state.json").write_text('{"keys": {"0123456789abcdef": {"sequence": 4}}, "revoked": []}')
    stick = tmp_path / "stick"
    stick.mkdir()
    code, out, err = run("backup", str(stick), "--json")
    assert code == 0, err
    backup = Path(json.loads(out)["path"])

    new_pc = tmp_path / "new-pc"
    new_pc.mkdir()
    monkeypatch.setenv("SHIFU_HOME", str(new_pc))
    code, out, err = run("restore", str(backup))
    assert code == 0, err
    import sqlite3

    conn = sqlite3.connect(new_pc / "ops.sqlite")
    assert conn.execute("SELECT query FROM audit").fetchone()[0] == "A01 皮帶停了"
    assert (new_pc / "keys" / "plant.pub").exists() and (new_pc / "shifu.toml").read_text().startswith("[general]")
    assert json.loads((new_pc / "bundle-state.json").read_text())["keys"]["0123456789abcdef"]["sequence"] == 4
    code, _, err = run("restore", str(backup))  # would overwrite data: needs --force
    assert code == 1 and "--force" in err
    (backup / "keys" / "plant.pub").write_text("tampered")
    code, _, err = run("restore", str(backup), "--force")
    assert code == 1 and "damaged" in err
