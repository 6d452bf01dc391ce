"""Round trip through the real CLI: keygen, build, sign, verify, import, the answer changes, rollback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from test_bundle_support import ORIGINAL_TITLE, SAMPLE_KB, a01_title, current_db, edited_sample

from appliance.cli.main import cli

NEW_TITLE = "Drive motor overload - check the thermal relay first"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_round_trip_answer_changes_and_rollback_brings_it_back(kb_home: Path, tmp_path: Path) -> None:
    keys = tmp_path / "engineer"
    code, out, _ = run("bundle", "keygen", "--out", str(keys), "--name", "plant", "--json")
    assert code == 0, out
    key_id = json.loads(out)["key_id"]
    (kb_home / "keys").mkdir()
    (keys / "plant.pub").rename(kb_home / "keys" / "plant.pub")

    source = edited_sample(tmp_path / "plant-kb", NEW_TITLE)
    bundle = tmp_path / "stick" / "update-1"
    # Vectors of unchanged chunks come from the appliance-side KB (the engineer's copy of it).
    code, out, err = run("bundle", "build", str(source), "--out", str(bundle), "--sign", str(keys / "plant.key"),
                         "--label", "June update", "--reuse-kb", str(current_db(kb_home).parent), "--json")
    assert code == 0, err
    built = json.loads(out)
    assert built["sequence"] == 1 and built["key_id"] == key_id and built["embeddings"] > 0
    assert (keys / "plant.seq").read_text().strip() == "1"

    code, out, err = run("bundle", "verify", str(bundle), "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] and json.loads(out)["importable"]

    assert a01_title(kb_home) == ORIGINAL_TITLE
    code, out, err = run("bundle", "import", str(bundle), "--json")
    assert code == 0, out + err
    imported = json.loads(out)
    assert imported["ok"] and imported["previous"] == 1 and imported["version"] == 2
    assert imported["build"]["embedded"] <= 1  # at most the edited code's chunk; the bundle brought it
    assert a01_title(kb_home) == NEW_TITLE
    assert not list((kb_home / "staging").glob("import-*"))

    # The same stick again: a replay, refused and logged, nothing changes.
    code, out, err = run("bundle", "import", str(bundle))
    assert code == 1 and "replay" in err and "nothing was changed" in err
    assert a01_title(kb_home) == NEW_TITLE

    code, out, _ = run("kb", "rollback", "--json")
    assert code == 0 and json.loads(out)["current"] == 1
    assert a01_title(kb_home) == ORIGINAL_TITLE
    code, out, _ = run("kb", "rollback", "2")  # a retained version can be chosen again
    assert code == 0 and a01_title(kb_home) == NEW_TITLE

    conn = sqlite3.connect(kb_home / "ops.sqlite")
    log = conn.execute("SELECT result, key_id, sequence, message FROM imports ORDER BY id").fetchall()
    assert [(r[0], r[1], r[2]) for r in log] == [("accepted", key_id, 1), ("refused", key_id, 1)]
    assert "replay" in log[1][3]


def test_downgrade_is_refused_after_a_newer_import(kb_home: Path, tmp_path: Path) -> None:
    keys = tmp_path / "engineer"
    run("bundle", "keygen", "--out", str(keys))
    (kb_home / "keys").mkdir()
    (keys / "shifu.pub").rename(kb_home / "keys" / "shifu.pub")
    # A key-only state (no build needed): the appliance already imported sequence 7 from this key.
    from kb.bundle.sign import key_id, load_private

    ident = key_id(load_private(keys / "shifu.key").public_key())
    (kb_home / "bundle-state.json").write_text(json.dumps({"keys": {ident: {"sequence": 7}}, "revoked": []}))
    bundle = tmp_path / "old"
    code, _, err = run("bundle", "build", str(SAMPLE_KB), "--out", str(bundle), "--sign", str(keys / "shifu.key"),
                       "--sequence", "6", "--no-embeddings")
    assert code == 0, err
    code, out, err = run("bundle", "verify", str(bundle), "--json")
    assert json.loads(out)["importable"] is False
    code, out, err = run("bundle", "import", str(bundle), "--json")
    assert code == 1 and "downgrade" in json.loads(out)["error"]
    assert a01_title(kb_home) == ORIGINAL_TITLE
