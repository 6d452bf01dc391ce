"""One line at the bottom: model and device, KB version, serial ports, operator, clock."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

from appliance.ui.labels import label
from appliance.ui.status import EngineStatus, PortStatus


class StatusBar(Static):
    def __init__(self, clock: Callable[[], str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.lang = "zh-TW"
        self.status = EngineStatus()
        self.ports: list[PortStatus] = []
        self.operator = ""

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh_text)
        self.refresh_text()

    def refresh_text(self) -> None:
        self.update(self.build())

    def build(self) -> Text:
        s, lang = self.status, self.lang
        if s.model_state == "ready":
            model = Text(f"{s.model_id} · {s.model_device}")
        else:
            model = Text(label(lang, f"model_{s.model_state}"), style="bold")
        if s.kb_version is not None:
            kb = f"v{s.kb_version}"
        else:
            kb = label(lang, "kb_none") if s.kb_error else "…"
        if self.ports:
            serial = " ".join(f"{p.device.rsplit('/', 1)[-1]}{'✓' if p.present else '✗'}" for p in self.ports)
        else:
            serial = label(lang, "serial_none")
        operator = self.operator or label(lang, "operator_none")
        return Text.assemble(
            (self.clock(), "bold"),
            "  ",
            (f"{label(lang, 'model')}: ", "bold"),
            model,
            "  ",
            (f"{label(lang, 'kb')}: ", "bold"),
            kb,
            "  ",
            (f"{label(lang, 'serial')}: ", "bold"),
            serial,
            "  ",
            (f"{label(lang, 'operator')}: ", "bold"),
            operator,
        )
