"""Acknowledge back: "fixed" on the kiosk's client acknowledges the OPC UA condition, through the intake.

A real asyncua server on 127.0.0.1 whose conditions accept Acknowledge once for their latest
EventId; `shifu intake`'s OPC UA input (OpcuaInput) and the kiosk's `LocalClient` each have their
own connection to the operational database, as the two processes do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import paths
from appliance.config import load_settings
from appliance.engine.engine import Engine
from appliance.engine.local import LocalClient
from appliance.intake.intake import Intake
from appliance.intake.opcua import OpcuaInput
from appliance.serial.alarm_store import AlarmStore
from appliance.store.opstore import OpStore
from kb.versions import VersionStore
from tests.intake_support import Controller, controller, store, wait_for

__all__ = ["controller", "store"]  # fixtures

logging.getLogger("asyncua").setLevel(logging.ERROR)


class Plant:
    """The intake reading one controller, and the kiosk's client over its own database connection."""

    def __init__(self, store: AlarmStore, controller: Controller, **server: Any) -> None:
        self.store = store
        self.controller = controller
        config = {"endpoint": controller.endpoint, "machine": "PR-2", "code_field": "ConditionName",
                  "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "timeout_s": 2.0, **server}
        self.settings = load_settings(serial={"duplicate_window_s": 30}, opcua={"servers": [config]})
        self.reader: OpcuaInput | None = None
        self.kiosk_db = OpStore(paths.ops_db())
        self.client = LocalClient(Engine(self.settings, VersionStore(paths.kb_dir()), opstore=self.kiosk_db))

    def start(self) -> OpcuaInput:
        self.reader = OpcuaInput(self.settings.opcua.servers[0], Intake(self.settings, self.store))
        self.reader.start()
        assert self.reader.refreshed.wait(20), self.reader.status.last_error
        return self.reader

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.stop()
            self.reader = None

    def fire(self, name: str) -> int:
        """The controller raises alarm `name`; the id of its stored row."""
        self.controller.alarm(name)
        rows = wait_for(lambda: self.store.opstore.rows("SELECT id FROM alarms WHERE code = ?", [name]),
                        what=f"alarm {name} stored")
        return int(rows[0]["id"])

    def fixed(self, alarm_id: int, verdict: str = "fixed", operator: str = "1234") -> Any:
        audit_id = self.kiosk_db.write_audit({"query": "P77"}, source="opcua")
        return self.client.feedback(audit_id, verdict, operator, alarm_id=alarm_id)  # type: ignore[arg-type]

    def audit(self) -> list[dict[str, Any]]:
        return self.kiosk_db.rows("SELECT alarm_id, feedback_id, comment, state, detail FROM acknowledgements"
                                  " ORDER BY id")

    def close(self) -> None:
        self.stop()
        self.kiosk_db.close()


@pytest.fixture
def plant_factory(store: AlarmStore, controller: Controller) -> Iterator[Any]:
    made: list[Plant] = []

    def make(**server: Any) -> Plant:
        made.append(Plant(store, controller, **server))
        return made[-1]

    yield make
    for plant in made:
        plant.close()


def test_fixed_acknowledges_once_and_refusals_are_shown_and_audited(plant_factory: Any) -> None:
    plant = plant_factory(acknowledge=True)
    plant.start()
    p77 = plant.fire("P77")
    saved = plant.fixed(p77)
    assert saved.acknowledgement is not None, "fixed on an OPC UA alarm with acknowledge = true sends it"
    assert (saved.acknowledgement.state, saved.acknowledgement.comment) == ("acknowledged", "Shifu: fixed")
    (condition, event_id, comment), = plant.controller.acks
    assert condition == "ns=1;s=cond-P77" and event_id == plant.controller.latest[condition]
    assert comment == "Shifu: fixed"  # no operator id by default

    again = plant.fixed(p77)  # the controller has it acknowledged already: it says so, and Shifu shows it
    assert again.acknowledgement is not None and again.acknowledgement.state == "refused"
    assert "BadConditionBranchAlreadyAcked" in again.acknowledgement.detail

    assert plant.fixed(p77, verdict="not_fixed").acknowledgement is None  # only "fixed" acknowledges
    p78 = plant.fire("P78")
    assert plant.fixed(p78).acknowledgement.state == "acknowledged"  # type: ignore[union-attr]
    # Three calls reached the controller: the refusal was not tried again behind anyone's back.
    assert plant.controller.calls == 3
    assert [(r["alarm_id"], r["state"]) for r in plant.audit()] == [(p77, "acknowledged"), (p77, "refused"),
                                                                    (p78, "acknowledged")]
    assert all(r["feedback_id"] for r in plant.audit())
    assert plant.reader is not None and plant.reader.status.counters["acknowledged"] == 2


def test_operator_id_only_when_the_plant_chose_it(plant_factory: Any) -> None:
    plant = plant_factory(acknowledge=True, acknowledge_comment="operator")
    plant.start()
    saved = plant.fixed(plant.fire("P10"), operator="OP-7")
    assert saved.acknowledgement is not None and saved.acknowledgement.state == "acknowledged"
    assert [c for _, _, c in plant.controller.acks] == ["Shifu: fixed (operator OP-7)"]


def test_off_by_default(plant_factory: Any) -> None:
    plant = plant_factory()
    plant.start()
    alarm = plant.fire("P20")
    assert plant.fixed(alarm).acknowledgement is None
    plant.controller.alarm("P21")  # a full round trip later, still nothing was sent
    wait_for(lambda: plant.store.opstore.rows("SELECT 1 FROM alarms WHERE code = 'P21'"), what="P21")
    assert plant.controller.calls == 0 and plant.audit() == []


def test_without_the_intake_it_fails_visibly_and_is_never_sent_later(plant_factory: Any) -> None:
    plant = plant_factory(acknowledge=True, acknowledge_wait_s=0.5)
    plant.start()
    alarm = plant.fire("P30")
    plant.stop()  # shifu intake is down
    saved = plant.fixed(alarm)
    assert saved.acknowledgement is not None and saved.acknowledgement.state == "failed"
    assert "shifu intake did not send it" in saved.acknowledgement.detail
    plant.start()  # back: the failed request stays failed; a new one goes through
    plant.settings.opcua.servers[0].acknowledge_wait_s = 10.0
    assert plant.fixed(plant.fire("P31")).acknowledgement.state == "acknowledged"  # type: ignore[union-attr]
    assert plant.controller.calls == 1 and plant.controller.acks[0][0] == "ns=1;s=cond-P31"
    assert [r["state"] for r in plant.audit()] == ["failed", "acknowledged"]


def test_an_event_that_is_no_condition_cannot_be_acknowledged(plant_factory: Any, home: Path) -> None:
    plant = plant_factory(acknowledge=True, code_field="ErrorCode")
    plant.start()
    plant.controller.alert("A01")  # a Machine Tools AlertType: an event, not a condition
    alarm = int(wait_for(lambda: plant.store.opstore.rows("SELECT id FROM alarms"), what="A01")[0]["id"])
    saved = plant.fixed(alarm)
    assert saved.acknowledgement is not None and saved.acknowledgement.state == "failed"
    assert "no alarm condition" in saved.acknowledgement.detail and plant.controller.calls == 0


def test_a_repeated_alarm_is_acknowledged_by_its_latest_event(plant_factory: Any) -> None:
    plant = plant_factory(acknowledge=True)
    plant.start()
    alarm = plant.fire("P40")
    plant.controller.alarm("P40")  # raised again inside the window: counted on the same row, a new EventId
    wait_for(lambda: plant.reader is not None and plant.reader.status.counters["repeats"] == 1, what="the repeat")
    saved = plant.fixed(alarm)
    assert saved.acknowledgement is not None and saved.acknowledgement.state == "acknowledged", saved
    assert plant.controller.acks[0][1] == plant.controller.latest["ns=1;s=cond-P40"]
