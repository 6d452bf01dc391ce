"""Technician mode: KB, model, serial and database status, and the only way out of the app.

Logs out by itself after `technician_idle_s` seconds without a key press. Bundle import,
rollback and export are wired in here when the bundle feature lands.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from appliance.config import Settings
from appliance.engine.client import EngineClient, EngineStatus
from appliance.ui.labels import label
from appliance.ui.status import serial_ports

DENSE = {"zh-TW": "向量索引", "en": "vector index"}
DENSE_STATE = {
    "zh-TW": {"on": "使用中", "off": "已關閉", "unavailable": "無", "degraded": "受損，暫以全文檢索"},
    "en": {"on": "in use", "off": "off", "unavailable": "none", "degraded": "damaged, full-text search meanwhile"},
}


class TechnicianScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "logout", show=False),
        Binding("f9", "logout", show=False),
        Binding("f10", "exit_app", show=False),
    ]

    def __init__(
        self, lang: str, settings: Settings, client: EngineClient, status: EngineStatus, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self.lang = lang
        self.settings = settings
        self.client = client
        self.status = status
        self.clock = clock
        self.last_activity = clock()
        self.refreshed = False
        """True once the status was re-read for this screen (the database counts are current)."""

    def compose(self) -> ComposeResult:
        yield Static(id="tech-title")
        with VerticalScroll(id="tech-body"):
            yield Static(id="tech-info")
        yield Static(id="tech-keys")

    def on_mount(self) -> None:
        idle = self.settings.kiosk.technician_idle_s
        self.query_one("#tech-title", Static).update(
            Text.assemble((label(self.lang, "tech_title"), "bold"), "   ", label(self.lang, "tech_idle", seconds=idle))
        )
        self.query_one("#tech-keys", Static).update(Text(label(self.lang, "tech_keys"), style="bold"))
        self.draw()
        self.set_interval(1.0, self.check_idle)
        self.refresh_status()

    @work(thread=True, exclusive=True, exit_on_error=False, group="technician")
    def refresh_status(self) -> None:
        """Re-read the engine's status off the UI thread (nothing is loaded or reloaded here)."""
        status = self.client.status()
        self.app.call_from_thread(self._refreshed, status)

    def _refreshed(self, status: EngineStatus) -> None:
        self.status = status
        self.refreshed = True
        self.draw()

    def draw(self) -> None:
        self.query_one("#tech-info", Static).update(self.describe())

    def describe(self) -> Text:
        s, lang = self.status, self.lang
        text = Text()

        def head(name: str) -> None:
            text.append(f"{label(lang, name)}\n", style="bold underline")

        head("tech_kb")
        if s.kb_error:
            text.append(f"  {s.kb_error}\n", style="bold red")
        else:
            counts = ", ".join(f"{k} {v}" for k, v in s.kb_counts.items())
            text.append(f"  {label(lang, 'active')} {label(lang, 'version')} {s.kb_version} {s.kb_name}\n")
            text.append(f"  {label(lang, 'versions')}: {', '.join(str(v) for v in s.kb_versions)}\n")
            text.append(f"  {label(lang, 'counts')}: {counts}\n")
            states = DENSE_STATE.get(lang, DENSE_STATE["en"])
            dense = f"  {DENSE.get(lang, DENSE['en'])}: {states[s.dense]}"
            text.append(f"{dense} ({s.dense_detail})\n" if s.dense_detail else f"{dense}\n")
        head("tech_model")
        if s.model_state == "ready":
            text.append(f"  {s.model_id} · {label(lang, 'device')} {s.model_device} · sha256 {s.model_sha256[:16]}\n")
            if s.adapter_id:
                text.append(f"  adapter {s.adapter_id}\n")
        else:
            text.append(f"  {label(lang, 'model_' + s.model_state)} {s.model_error}\n", style="bold")
        head("tech_serial")
        ports = serial_ports(self.settings)
        if not ports:
            text.append(f"  {label(lang, 'serial_none')}\n")
        for port in ports:
            state = label(lang, "exists" if port.present else "missing")
            text.append(f"  {port.device} ({port.role} {port.machine}): {state}\n")
        head("tech_db")
        if s.opstore_error:
            text.append(f"  {s.opstore_error}\n", style="bold red")
        text.append("  " + ", ".join(f"{k} {v}" for k, v in s.opstore_counts.items()) + "\n")
        text.append(f"\n{label(lang, 'tech_bundle')}\n", style="italic")
        return text

    def on_key(self) -> None:
        self.last_activity = self.clock()

    def check_idle(self) -> None:
        if self.clock() - self.last_activity >= self.settings.kiosk.technician_idle_s:
            self.action_logout()

    def action_logout(self) -> None:
        if self.app.screen is self:
            self.app.pop_screen()
            self.app.notify(label(self.lang, "tech_logout"))

    def action_exit_app(self) -> None:
        self.app.exit()
