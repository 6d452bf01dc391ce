"""The kiosk app: one operator screen over an engine client.

The app talks to the engine only through `appliance.engine.client.EngineClient` (ask,
alarms since, feedback, status, machines): `LocalClient` in-process, `RemoteEngine` as a
thin client of `shifu serve`; it behaves the same over either.

Answers run in an exclusive thread worker: a new scan cancels the running answer (the
worker checks cancellation between events, and every UI update carries the number of the
query it belongs to, so a late event of a cancelled answer is dropped). Nothing below the
UI may take the app down: errors become notices and the standard procedure stays.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import cast

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.theme import Theme
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState, get_current_worker

from appliance.config import Settings
from appliance.engine.client import EngineClient, EngineStatus, Machine, Verdict
from appliance.engine.types import CodeFound, Done, Event, Failed, PassagesFound, Query
from appliance.sdnotify import notify, watchdog_interval
from appliance.ui.alarm_watcher import AlarmWatcher
from appliance.ui.labels import label, other_lang
from appliance.ui.machine import MachineContext, chosen_file, find_machine, load_chosen, save_chosen
from appliance.ui.messages import AlarmsArrived
from appliance.ui.pin import PinGuard, pin_file, verify_pin
from appliance.ui.scanner import read_entry
from appliance.ui.screens.machine import MachineScreen
from appliance.ui.screens.pin import PinScreen, PinVerdict
from appliance.ui.screens.technician import TechnicianScreen
from appliance.ui.status import serial_ports
from appliance.ui.widgets.alarm_list import AlarmList
from appliance.ui.widgets.answer_view import CHOICE_KEYS, MAX_CHOICES, AnswerView
from appliance.ui.widgets.key_bar import KeyBar
from appliance.ui.widgets.status_bar import StatusBar
from kb.errors import ShifuError

HIGH_CONTRAST = Theme(
    name="shifu-high-contrast",
    primary="#FFFF00",
    secondary="#00FFFF",
    accent="#FFFFFF",
    warning="#FFAA00",
    error="#FF3030",
    success="#00FF00",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#202020",
    dark=True,
)


def wall_clock() -> str:
    return time.strftime("%H:%M:%S")


class KioskApp(App[None]):
    CSS_PATH = "kiosk.tcss"
    TITLE = "Shifu 師傅"
    ENABLE_COMMAND_PALETTE = False  # its system commands include "quit"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding("f1", "feedback('fixed')", show=False),
        Binding("f2", "feedback('not_fixed')", show=False),
        Binding("f3", "feedback('call_technician')", show=False),
        Binding("f4", "pick_machine", show=False),
        Binding("f5", "switch_lang", show=False),
        *(Binding(key.lower(), f"choose({i})", show=False) for i, key in enumerate(CHOICE_KEYS)),
        *(Binding(f"alt+{i + 1}", f"choose({i})", show=False) for i in range(MAX_CHOICES)),
        Binding("f9", "technician", show=False),
        Binding("escape", "clear", show=False),
        Binding("pageup", "scroll_answer(-1)", show=False),
        Binding("pagedown", "scroll_answer(1)", show=False),
        Binding("down", "focus_alarms", show=False),
        # Priority bindings win over every widget, so no focused input can turn these into an exit.
        Binding("ctrl+q", "guarded('quit')", show=False, priority=True),
        Binding("ctrl+c", "guarded('quit')", show=False, priority=True),
        Binding("ctrl+backslash", "guarded('quit')", show=False, priority=True),
        Binding("ctrl+z", "guarded('suspend')", show=False, priority=True),
    ]

    def __init__(
        self,
        settings: Settings,
        client: EngineClient,
        *,
        kiosk_mode: bool | None = None,
        clock: Callable[[], str] = wall_clock,
        monotonic: Callable[[], float] = time.monotonic,
        pin_path: Path | None = None,
        watch_alarms: bool = True,
        machine_file: Path | None = None,
        today: Callable[[], date] = date.today,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.today = today
        self.now = now
        self.settings = settings
        self.client = client
        self.kiosk_mode = settings.kiosk.kiosk_mode if kiosk_mode is None else kiosk_mode
        self.clock = clock
        self.monotonic = monotonic
        self.pin_path = pin_path or pin_file()
        self.lang: str = settings.general.lang
        self.operator = ""
        self.machine_file = machine_file or chosen_file()
        fixed = settings.kiosk.machine_id.strip()
        self.machine = MachineContext(fixed, fixed=True) if fixed else MachineContext(load_chosen(self.machine_file))
        self.machines: list[Machine] = []
        self.machines_loaded = threading.Event()
        self.status = EngineStatus()
        self.pin_guard = PinGuard(settings.kiosk.pin_lockout_attempts, settings.kiosk.pin_lockout_s, clock=monotonic)
        self.serial = 0  # number of the query on screen; events of older queries are dropped
        self.current: Query | None = None
        self.current_alarm: int | None = None  # the alarm the answer on screen was opened from
        self.pending_verdict: tuple[int, str] | None = None
        self.warm_done = threading.Event()
        self.watch_alarms = watch_alarms
        self.watcher: AlarmWatcher | None = None
        self.alarms_seeded = False
        self._flash_timer: Timer | None = None
        self._flash_stop: Timer | None = None
        self.register_theme(HIGH_CONTRAST)
        if settings.kiosk.high_contrast:
            self.theme = HIGH_CONTRAST.name

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        max_chars = self.settings.general.max_query_chars
        yield Input(placeholder=label(self.lang, "placeholder"), id="query", max_length=max_chars)
        with Horizontal(id="main"):
            yield AnswerView(self.lang, id="answer")
            with Vertical(id="alarms-pane"):
                yield Static(id="alarms-title")
                yield AlarmList(id="alarms")
        yield KeyBar(id="keys")
        yield StatusBar(self.clock, id="status")

    def on_mount(self) -> None:
        self.relabel()
        self.query_one("#query", Input).focus()
        self.query_one(StatusBar).ports = serial_ports(self.settings)
        self.warm()
        # Under systemd: ready once the screen is up; a frozen UI stops the watchdog pings.
        notify("READY=1")
        interval = watchdog_interval()
        if interval is not None:
            self.set_interval(interval, lambda: notify("WATCHDOG=1"))
        if self.watch_alarms:
            self.watcher = AlarmWatcher(
                self.client,
                lambda rows: self.post_message(AlarmsArrived(rows)),
                interval=self.settings.kiosk.alarm_poll_s,
                lang=self.lang,
            )
            self.watcher.start()

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def relabel(self) -> None:
        """Redraw every text that depends on the interface language."""
        self.query_one("#query", Input).placeholder = label(self.lang, "placeholder")
        self._machine_title()
        self.query_one(KeyBar).set_lang(self.lang)
        self.query_one(AnswerView).set_lang(self.lang)
        bar = self.query_one(StatusBar)
        bar.lang = self.lang
        bar.refresh_text()
        self._alarm_title()

    def _alarm_title(self) -> None:
        alarms = self.query_one(AlarmList)
        hint = label(self.lang, "alarm_hint") if alarms.option_count else label(self.lang, "alarms_none")
        self.query_one("#alarms-title", Static).update(f"{label(self.lang, 'alarms')}\n{hint}")

    def _machine_title(self) -> None:
        """The machine questions are asked for, on the input's top border (the kiosk's header)."""
        if self.machine.machine_id:
            described = self.machine.describe({m.machine_id: m for m in self.machines})
            text = f"{label(self.lang, 'machine')}: {described}"
        else:
            text = f"{label(self.lang, 'machine')}: " + label(self.lang, "machine_none",
                                                              prefix=self.settings.kiosk.machine_prefix)
        self.query_one("#query", Input).border_title = text

    def on_main_screen(self) -> bool:
        return self.screen is self.screen_stack[0]

    # -- model and KB warm-up --------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="warm")
    def warm(self) -> None:
        """Show the status at once, then open the KB and load the model before the first question."""
        try:
            self.call_from_thread(self._status_changed, self.client.status())
            self._load_machines()
            self.call_from_thread(self._status_changed, self.client.warm())
        finally:
            self.machines_loaded.set()
            self.warm_done.set()

    def _load_machines(self) -> None:
        """Read the inventory (worker thread); without one, asset tags cannot be checked."""
        try:
            machines = self.client.machines()
        except Exception as error:  # no KB yet, server down: the kiosk still answers
            self.call_from_thread(self.notify, label(self.lang, "failed", message=error), severity="warning")
            return
        self.call_from_thread(self._machines_changed, machines)

    def _machines_changed(self, machines: list[Machine]) -> None:
        self.machines = machines
        self.query_one(AnswerView).machines = machines
        self._machine_title()

    def _status_changed(self, status: EngineStatus) -> None:
        self.status = status
        bar = self.query_one(StatusBar)
        bar.status = self.status
        bar.refresh_text()

    # -- asking ----------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "query":
            return
        event.stop()
        kiosk = self.settings.kiosk
        entry = read_entry(
            event.value, prefix=kiosk.scanner_prefix, suffix=kiosk.scanner_suffix,
            operator_prefix=kiosk.operator_prefix, machine_prefix=kiosk.machine_prefix,
        )
        event.input.value = ""  # ready for the next scan burst
        if entry.operator is not None:
            self.set_operator(entry.operator)
        elif entry.machine is not None:
            self.choose_machine(entry.machine)
        elif entry.text:
            self.ask(
                Query(
                    text=entry.text,
                    machine_id=self.machine.machine_id,
                    source="scanner" if entry.scanned else "keyboard",
                    lang=self.lang,
                )
            )

    def set_operator(self, operator: str) -> None:
        self.operator = operator
        bar = self.query_one(StatusBar)
        bar.operator = operator
        bar.refresh_text()
        if operator:
            self.notify(label(self.lang, "operator_set", op=operator))

    # -- the machine ----------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="machine")
    def choose_machine(self, wanted: str) -> None:
        """An asset-tag scan: check it against the inventory (waiting for the list right after
        start), then keep it."""
        if self.machine.fixed:
            if wanted.casefold() != self.machine.machine_id.casefold():
                self.call_from_thread(self.notify, label(self.lang, "machine_fixed", machine=self.machine.machine_id),
                                      severity="warning")
            return
        if not wanted:
            self.call_from_thread(self._set_machine, "")
            return
        self.machines_loaded.wait(60)
        machine = find_machine(self.machines, wanted)
        if machine is None:
            current = self.machine.machine_id or label(self.lang, "machine_none",
                                                       prefix=self.settings.kiosk.machine_prefix)
            self.call_from_thread(self.notify, label(self.lang, "machine_unknown", machine=wanted, current=current),
                                  severity="error", timeout=8)
            return
        self.call_from_thread(self._set_machine, machine.machine_id)

    def _set_machine(self, machine_id: str) -> None:
        self.machine = MachineContext(machine_id)
        try:
            save_chosen(self.machine_file, machine_id)
        except OSError as error:
            self.notify(label(self.lang, "machine_save_failed", error=error), severity="error")
        self._machine_title()
        if machine_id:
            described = self.machine.describe({m.machine_id: m for m in self.machines})
            self.notify(label(self.lang, "machine_set", machine=described))
        else:
            self.notify(label(self.lang, "machine_cleared"))
        current = self.current
        if current is not None and self.current_alarm is None:  # the answer on screen follows the machine
            self.ask(Query(text=current.text, machine_id=machine_id, source=current.source, lang=self.lang))

    def action_pick_machine(self) -> None:
        if not self.on_main_screen():
            return
        if self.machine.fixed:
            self.notify(label(self.lang, "machine_fixed", machine=self.machine.machine_id), severity="warning")
            return
        self.push_screen(MachineScreen(self.lang, self.machines, self.machine.machine_id), self._machine_picked)

    def _machine_picked(self, chosen: str | None) -> None:
        if chosen is not None:
            self._set_machine(chosen)

    def action_choose(self, index: int) -> None:
        """F6… / Alt+1…: one of the answer's choices (a code of the entry, a model's row, a likely code)."""
        current = self.current
        if not self.on_main_screen() or current is None:
            return
        choices = self.query_one(AnswerView).choices()
        if index >= len(choices):
            self.notify(label(self.lang, "choice_none"), severity="warning")
            return
        choice = choices[index][0]
        machine_id = self.machine.machine_id if choice.machine_id is None else choice.machine_id
        known = {m.machine_id: m.machine_model for m in self.machines}
        if machine_id and choice.machine_model and known.get(machine_id, choice.machine_model) != choice.machine_model:
            machine_id = ""  # the operator chose another model's row than this machine's
        query = Query(text=choice.text, machine_id=machine_id, machine_model=choice.machine_model,
                      source=current.source, lang=self.lang)
        self.ask(query, alarm=self.current_alarm)

    def ask(self, query: Query, alarm: int | None = None) -> None:
        """Show a new answer at once and start it; the previous answer's worker is cancelled.

        `alarm` is the id of the alarm the question was opened from (its feedback names it).
        """
        self._drop_pending()
        self.serial += 1
        self.current = query
        self.current_alarm = alarm
        self._stop_flash()
        self.query_one(AnswerView).start(query.text)
        self.answer_worker(query, self.serial)

    @work(thread=True, exclusive=True, exit_on_error=False, group="answer")
    def answer_worker(self, query: Query, serial: int) -> None:
        worker = get_current_worker()
        stream = self.client.stream(query)
        try:
            for event in stream:
                if worker.is_cancelled:
                    return
                self.call_from_thread(self._on_event, serial, event)
                if isinstance(event, PassagesFound):
                    # The next step loads the model; never let it race the warm-up's load.
                    while not self.warm_done.wait(0.1):
                        if worker.is_cancelled:
                            return
        except ShifuError as error:
            if not worker.is_cancelled:
                self.call_from_thread(self._on_failure, serial, label(self.lang, "failed", message=error))
        except Exception as error:  # the kiosk must survive any bug below it
            if not worker.is_cancelled:
                self.call_from_thread(self._on_failure, serial, label(self.lang, "internal", message=error))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # closes the model stream too, releasing the model for the next query

    def _on_event(self, serial: int, event: Event) -> None:
        if serial != self.serial:
            return
        view = self.query_one(AnswerView)
        view.apply(event)
        if isinstance(event, CodeFound) and event.entry is not None and event.entry.severity == "critical":
            self.signal_critical("#answer-header")
        elif isinstance(event, Failed) and self.status.model_state != "disabled":
            self.notify(label(self.lang, "failed", message=event.message), severity="warning", timeout=8)
        elif isinstance(event, Done) and self.pending_verdict is not None:
            pending_serial, verdict = self.pending_verdict
            self.pending_verdict = None
            if pending_serial == serial:
                self.store_feedback(event.answer.audit_id, verdict, self.current_alarm)

    def _on_failure(self, serial: int, message: str) -> None:
        if serial != self.serial:
            return
        self.query_one(AnswerView).add_notice(message)
        self.notify(message, severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Errors the workers did not catch themselves still end up as a notice, never a crash.
        if event.state == WorkerState.ERROR:
            message = label(self.lang, "internal", message=event.worker.error)
            self.query_one(AnswerView).add_notice(message)
            self.notify(message, severity="error", timeout=10)

    # -- alarms ----------------------------------------------------------------------------
    def on_alarms_arrived(self, message: AlarmsArrived) -> None:
        critical = self.query_one(AlarmList).add_alarms(message.rows)
        self._alarm_title()
        if critical and self.alarms_seeded:
            self.signal_critical("#alarms-title")
        self.alarms_seeded = True

    def on_alarm_list_opened(self, message: AlarmList.Opened) -> None:
        alarm = message.alarm
        text = str(alarm.get("code") or alarm.get("raw") or "").strip()
        if text:
            query = Query(text=text, machine_id=str(alarm.get("machine_id") or ""), source="serial", lang=self.lang)
            self.ask(query, alarm=int(alarm["id"]))
            self.query_one("#query", Input).focus()

    def action_focus_alarms(self) -> None:
        alarms = self.query_one(AlarmList)
        if self.on_main_screen() and alarms.option_count:
            alarms.focus()
            if alarms.highlighted is None:
                alarms.highlighted = 0

    # -- critical signal -------------------------------------------------------------------
    def signal_critical(self, selector: str) -> None:
        """Colour (CSS), flashing for a while, and the terminal bell."""
        self.bell()
        self._stop_flash()
        target = self.query_one(selector)
        target.add_class("critical")
        seconds = self.settings.kiosk.critical_flash_s
        if seconds <= 0:
            return
        self._flash_timer = self.set_interval(0.5, lambda: target.toggle_class("flash"))
        self._flash_stop = self.set_timer(seconds, self._stop_flash)

    def _stop_flash(self) -> None:
        for timer in (self._flash_timer, self._flash_stop):
            if timer is not None:
                timer.stop()
        self._flash_timer = self._flash_stop = None
        for widget in self.query(".flash"):
            widget.remove_class("flash")
        self.query_one("#alarms-title").remove_class("critical")

    # -- feedback --------------------------------------------------------------------------
    def action_feedback(self, verdict: str) -> None:
        if not self.on_main_screen():
            return
        state = self.query_one(AnswerView).state
        name = label(self.lang, f"verdict_{verdict}")
        if state is None:
            self.notify(label(self.lang, "fb_none"), severity="warning")
        elif state.answer is None:
            self.pending_verdict = (self.serial, verdict)
            self.notify(label(self.lang, "fb_pending", verdict=name))
        else:
            self.store_feedback(state.audit_id, verdict, self.current_alarm)
        if verdict == "call_technician" and state is not None:
            self.bell()

    def _drop_pending(self) -> None:
        if self.pending_verdict is not None:
            self.pending_verdict = None
            self.notify(label(self.lang, "fb_dropped"), severity="warning")

    @work(thread=True, exit_on_error=False, group="feedback")
    def store_feedback(self, audit_id: int | None, verdict: str, alarm: int | None = None) -> None:
        """Write the verdict off the UI thread (synchronous=FULL waits for the disk, or the server)."""
        lang, name = self.lang, label(self.lang, f"verdict_{verdict}")
        try:
            if audit_id is None:
                raise ShifuError("this answer has no audit record (the audit log could not be written); ask again")
            saved = self.client.feedback(audit_id, cast(Verdict, verdict), self.operator, alarm_id=alarm)
        except Exception as error:
            self.call_from_thread(self.notify, label(lang, "fb_failed", error=error), severity="error")
            return
        text = label(lang, "fb_saved", verdict=name)
        if verdict == "call_technician":
            text += "\n" + label(lang, "call_sent")
        ack = saved.acknowledgement
        if ack is None:
            self.call_from_thread(self.notify, text)
            return
        # The alarm's OPC UA server was told (or not): the operator sees which, never silence.
        text += "\n" + label(lang, f"ack_{ack.state}", endpoint=ack.endpoint, detail=ack.detail)
        self.call_from_thread(self.notify, text, severity="information" if ack.state == "acknowledged" else "warning",
                              timeout=10)

    # -- language, clearing, scrolling -----------------------------------------------------
    def action_switch_lang(self) -> None:
        if not self.on_main_screen():
            return
        self.lang = other_lang(self.lang)
        if self.watcher is not None:
            self.watcher.lang = self.lang
        self.relabel()
        self.notify(label(self.lang, "lang_switched"))
        if self.current is not None:  # the answer follows the interface language
            self.ask(
                Query(
                    text=self.current.text,
                    machine_id=self.current.machine_id,
                    machine_model=self.current.machine_model,
                    source=self.current.source,
                    lang=self.lang,
                ),
                alarm=self.current_alarm,
            )

    def action_clear(self) -> None:
        if not self.on_main_screen():
            return
        self._drop_pending()
        self.workers.cancel_group(self, "answer")
        self.serial += 1
        self.current = None
        self.current_alarm = None
        self._stop_flash()
        self.query_one("#answer-header").remove_class("critical")
        self.query_one(AnswerView).clear()
        query = self.query_one("#query", Input)
        query.value = ""
        query.focus()

    def action_scroll_answer(self, direction: int) -> None:
        view = self.query_one(AnswerView)
        if direction < 0:
            view.scroll_page_up()
        else:
            view.scroll_page_down()

    # -- leaving ---------------------------------------------------------------------------
    def action_guarded(self, what: str) -> None:
        """Ctrl+Q/C/Z/\\: refused in kiosk mode; only technician mode can leave the app."""
        if self.kiosk_mode:
            self.notify(label(self.lang, "no_exit"), severity="warning")
        elif what == "suspend":
            self.action_suspend_process()
        else:
            self.exit()

    def action_technician(self) -> None:
        if not self.on_main_screen():
            return
        locked = self.pin_guard.locked_for()
        if locked:
            self.notify(label(self.lang, "pin_locked", seconds=locked), severity="error")
            return
        self.push_screen(PinScreen(self.lang, self.check_pin), self._pin_done)

    def check_pin(self, pin: str) -> PinVerdict:
        result, left = self.pin_guard.check(pin, lambda p: verify_pin(p, self.pin_path))
        if result:
            return PinVerdict(True)
        if result is None:
            return PinVerdict(False, label(self.lang, "pin_unset"), final=True)
        if left <= 0:
            return PinVerdict(False, label(self.lang, "pin_locked", seconds=self.pin_guard.locked_for()), final=True)
        return PinVerdict(False, label(self.lang, "pin_wrong", left=left))

    def _pin_done(self, ok: bool | None) -> None:
        if ok:
            self.push_screen(TechnicianScreen(self.lang, self.settings, self.client, self.status, self.monotonic,
                                              self.today, self.now))


def make_app(
    settings: Settings,
    client: EngineClient,
    *,
    kiosk_mode: bool | None = None,
    clock: Callable[[], str] = wall_clock,
    monotonic: Callable[[], float] = time.monotonic,
    pin_path: Path | None = None,
    watch_alarms: bool = True,
    machine_file: Path | None = None,
    today: Callable[[], date] = date.today,
    now: Callable[[], datetime] | None = None,
) -> KioskApp:
    """Build the kiosk app over `client` (`LocalClient(engine)` or `RemoteEngine(url, ...)`); tests inject
    clocks (and the date and time the technician screen's figures and handover count from), the PIN file and whether alarms are watched."""
    return KioskApp(
        settings,
        client,
        kiosk_mode=kiosk_mode,
        clock=clock,
        monotonic=monotonic,
        pin_path=pin_path,
        watch_alarms=watch_alarms,
        machine_file=machine_file,
        today=today,
        now=now,
    )
