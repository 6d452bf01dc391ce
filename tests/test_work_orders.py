"""A Call technician press drafts a work order from what the operator saw and tried (real SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from appliance.store.opstore import OpStore

SHIFU = Path(sys.executable).parent / "shifu"
ROW = {"code": "A01", "machine_model": "CV-200", "title": "Drive motor overload",
       "steps": ["Press stop and apply lockout/tagout", "Check the belt for jammed material"],
       "safety": ["Lockout before touching the belt"], "lang": "en"}


def test_call_technician_drafts_a_work_order(tmp_path: Path) -> None:
    store = OpStore(tmp_path / "ops.sqlite")
    audit = store.write_audit({"query": "A01", "normalized": "A01", "machine_id": "CV-01", "machine_model": "CV-200",
                               "code": ROW, "generated": {"text": "Clear the jam."}}, source="serial")
    alarm = store.add_alarm(port="ttyUSB0", machine_id="CV-01", raw="CV-01,A01", code="A01", normalized="A01",
                            message="")
    with store.db.conn:
        store.db.conn.execute("UPDATE alarms SET audit_id = ? WHERE id = ?", [audit, alarm])
    store.add_feedback(None, "not_fixed", "op-3", alarm_id=alarm)
    assert store.work_orders() == []  # Not fixed alone drafts nothing
    press = store.add_feedback(None, "call_technician", "op-3", alarm_id=alarm)
    store.add_feedback(audit, "fixed", "op-4")
    orders = store.work_orders()
    assert len(orders) == 1
    order = orders[0]
    assert (order["code"], order["machine_id"], order["machine_model"], order["title"]) == (
        "A01", "CV-01", "CV-200", "Drive motor overload")
    assert order["steps"] == ROW["steps"] and order["generated"] == {"text": "Clear the jam."}
    assert [t["verdict"] for t in order["tried"]] == ["not_fixed"]  # what was tried before the call
    assert (order["operator"], order["feedback_id"], order["alarm_id"], order["audit_id"]) == ("op-3", press, alarm, audit)
    assert order["alarm_received"] is not None and order["status"] == "open"
    store.close()


def test_work_orders_are_listed_and_exported(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = OpStore(home / "ops.sqlite")
    audit = store.write_audit({"query": "a 01", "normalized": "A01", "machine_id": "CV-02", "code": ROW}, source="keyboard")
    store.add_feedback(audit, "call_technician", "op-9")
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFU_")}
    env.update({"SHIFU_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    listed = subprocess.run([str(SHIFU), "report", "work-orders", "--json"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["code"], r["machine_id"], r["query"], r["operator"]) for r in rows] == [("A01", "CV-02", "a 01", "op-9")]
    text = subprocess.run([str(SHIFU), "report", "work-orders"], capture_output=True, text=True, env=env, timeout=120)
    assert "CV-02" in text.stdout and "Press stop and apply lockout/tagout" in text.stdout
    stick = tmp_path / "stick"
    stick.mkdir()
    exported = subprocess.run([str(SHIFU), "export", str(stick), "--json"], capture_output=True, text=True, env=env,
                              timeout=120)
    assert exported.returncode == 0, exported.stderr
    folder = Path(json.loads(exported.stdout)["path"])
    assert "work_orders" in json.loads((folder / "export.json").read_text())["columns"]
    order = json.loads((folder / "work_orders.jsonl").read_text(encoding="utf-8"))
    assert order["steps"] == ROW["steps"] and order["created"].endswith("Z") and order["tried"] == []
    assert (folder / "work_orders.csv").read_text(encoding="utf-8").startswith("id,created,created_unix,status,")
