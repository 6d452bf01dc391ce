"""Technician mode: KB, model, serial and database status, and the only way out of the app.

Logs out by itself after `technician_idle_s` seconds without a key press. F2 shows the
status; F3, F4 and F5 the floor's figures for today, this week and this month (the Pareto of
codes as a terminal chart, the repeat offenders, the questions the knowledge base could not
answer); F6 and F7 the handover of this shift and of the one before (its alarms, which were
fixed and how, which are open or escalated, codes repeated on one machine). Everything is read
through the client protocol, so a thin-client kiosk shows the server's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static
from textual_plotext import PlotextPlot

from appliance.config import Settings
from appliance.engine.client import EngineClient, EngineStatus, FloorReport, ShiftReport
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
        Binding("f2", "page('status')", show=False),
        Binding("f3", "page('today')", show=False),
        Binding("f4", "page('week')", show=False),
        Binding("f5", "page('month')", show=False),
        Binding("f6", "shift(0)", show=False),
        Binding("f7", "shift(1)", show=False),
    ]

    def __init__(
        self, lang: str, settings: Settings, client: EngineClient, status: EngineStatus, clock: Callable[[], float],
        today: Callable[[], date] = date.today, now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.today = today
        self.now = now or (lambda: datetime.now().astimezone())
        self.handover: ShiftReport | None = None
        """The shift on screen (None until it has been read)."""
        self.page = "status"
        self.floor: FloorReport | None = None
        """The figures on screen (None until the page's figures have been read)."""
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
            with Vertical(id="tech-floor"):
                yield Static(id="tech-floor-head")
                yield PlotextPlot(id="tech-pareto")
                yield Static(id="tech-floor-text")
            yield Static(id="tech-shift")
        yield Static(id="tech-keys")

    def on_mount(self) -> None:
        idle = self.settings.kiosk.technician_idle_s
        self.query_one("#tech-title", Static).update(
            Text.assemble((label(self.lang, "tech_title"), "bold"), "   ", label(self.lang, "tech_idle", seconds=idle))
        )
        self.query_one("#tech-keys", Static).update(Text(label(self.lang, "tech_keys"), style="bold"))
        self.query_one("#tech-floor").display = False
        self.query_one("#tech-shift").display = False
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

    # -- the floor's figures ---------------------------------------------------------------
    def period(self, page: str) -> tuple[date, date]:
        """Today, this week (from Monday) or this month (from the 1st), up to today."""
        today = self.today()
        if page == "week":
            return today - timedelta(days=today.weekday()), today
        if page == "month":
            return today.replace(day=1), today
        return today, today

    def action_page(self, page: str) -> None:
        self.page = page
        floor = page in ("today", "week", "month")
        self.query_one("#tech-info").display = page == "status"
        self.query_one("#tech-floor").display = floor
        self.query_one("#tech-shift").display = page.startswith("shift")
        if floor:
            self.floor = None
            self.query_one("#tech-floor-head", Static).update(Text(label(self.lang, "floor_loading"), style="italic"))
            self.load_floor(page, *self.period(page))

    @work(thread=True, exclusive=True, exit_on_error=False, group="floor")
    def load_floor(self, page: str, first: date, last: date) -> None:
        try:
            report = self.client.floor_report(first, last)
        except Exception as error:  # a broken database or a server down: say so, stay in the screen
            self.app.call_from_thread(self._floor_failed, page, str(error))
            return
        self.app.call_from_thread(self._floor_loaded, page, report)

    def _floor_failed(self, page: str, message: str) -> None:
        if page == self.page:
            self.query_one("#tech-floor-head", Static).update(Text(label(self.lang, "failed", message=message),
                                                                  style="bold red"))

    def _floor_loaded(self, page: str, report: FloorReport) -> None:
        if page != self.page:
            return
        self.floor = report
        lang = self.lang
        head = Text.assemble((label(lang, f"floor_{page}"), "bold underline"), f"  {report.first} – {report.last}\n",
                             (label(lang, "floor_pareto"), "bold"))
        self.query_one("#tech-floor-head", Static).update(head)
        chart = self.query_one("#tech-pareto", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        if report.pareto:
            plt.bar([code for code, _, _ in report.pareto], [count for _, count, _ in report.pareto])
        chart.display = bool(report.pareto)
        chart.refresh()
        self.query_one("#tech-floor-text", Static).update(self.describe_floor(report))

    def describe_floor(self, report: FloorReport) -> Text:
        lang = self.lang
        text = Text()
        if not report.pareto:
            text.append(f"{label(lang, 'floor_none')}\n", style="italic")
        for code, count, share in report.pareto:
            text.append(f"  {code:<10} {count:>5}  {label(lang, 'floor_cumulative')} {share:.0%}\n")
        text.append(f"\n{label(lang, 'floor_repeats')}\n", style="bold")
        if not report.repeats:
            text.append(f"  {label(lang, 'floor_none')}\n", style="italic")
        for machine, code, repeats, not_held in report.repeats:
            text.append(f"  {machine:<8} {code:<10} " + label(lang, "floor_repeat_row", repeats=repeats,
                                                                 not_held=not_held) + "\n")
        text.append(f"\n{label(lang, 'floor_gaps')}\n", style="bold")
        if not report.gaps:
            text.append(f"  {label(lang, 'floor_none')}\n", style="italic")
        for example, count in report.gaps:
            text.append(f"  {count:>4} × {example}\n")
        return text

    # -- the shift handover ----------------------------------------------------------------
    def action_shift(self, back: int) -> None:
        """This shift (0) or the one before it (1)."""
        page = f"shift{back}"
        self.action_page(page)
        self.handover = None
        self.query_one("#tech-shift", Static).update(Text(label(self.lang, "floor_loading"), style="italic"))
        self.load_shift(page, self.now(), back)

    @work(thread=True, exclusive=True, exit_on_error=False, group="shift")
    def load_shift(self, page: str, at: datetime, back: int = 0) -> None:
        """The shift holding `at`, or (`back`) the one that ended when it began: the engine knows
        the plant's shifts (`general.shifts`), so a thin client asks it twice."""
        try:
            report = self.client.handover(at, self.lang)
            if back:
                report = self.client.handover(datetime.fromtimestamp(report.begins - 60).astimezone(), self.lang)
        except Exception as error:  # a broken database or a server down: say so, stay in the screen
            self.app.call_from_thread(self._shift_failed, page, str(error))
            return
        self.app.call_from_thread(self._shift_loaded, page, report)

    def _shift_failed(self, page: str, message: str) -> None:
        if page == self.page:
            self.query_one("#tech-shift", Static).update(Text(label(self.lang, "failed", message=message),
                                                             style="bold red"))

    def _shift_loaded(self, page: str, report: ShiftReport) -> None:
        if page == self.page:
            self.handover = report
            self.query_one("#tech-shift", Static).update(self.describe_shift(report, previous=page == "shift1"))

    def describe_shift(self, report: ShiftReport, *, previous: bool) -> Text:
        lang = self.lang

        def at(stamp: float) -> str:
            return datetime.fromtimestamp(stamp).astimezone().strftime("%m-%d %H:%M")

        text = Text()
        text.append(label(lang, "shift_previous" if previous else "shift_this"), style="bold underline")
        text.append(f"  {at(report.begins)} – {at(report.ends)}\n")
        text.append(label(lang, "shift_counts", alarms=len(report.alarms), fixed=report.count("fixed"),
                          escalated=report.count("escalated"), open=report.count("open")) + "\n\n", style="bold")
        if not report.alarms:
            text.append(f"  {label(lang, 'floor_none')}\n", style="italic")
        styles = {"fixed": "green", "escalated": "bold yellow", "open": "bold red"}
        for state in ("open", "escalated", "fixed"):  # what the next shift must act on first
            rows = [a for a in report.alarms if a.state == state]
            if not rows:
                continue
            text.append(f"{label(lang, 'shift_' + state)} ({len(rows)})\n", style=styles[state])
            for a in rows:
                repeats = f" ×{a.repeats + 1}" if a.repeats else ""
                text.append(f"  {at(a.received)[6:]}  {a.machine_id:<8} {a.code:<10}{repeats} {a.title}\n")
                if a.state == "fixed":
                    minutes = "" if a.minutes_to_fix is None else label(lang, "shift_minutes",
                                                                        minutes=round(a.minutes_to_fix))
                    done = a.action or label(lang, "shift_no_record")
                    text.append(f"      {minutes} · {done}" + (f" · {a.operator}" if a.operator else "") + "\n",
                                style="dim")
                elif a.operator:
                    text.append(f"      {a.operator}\n", style="dim")
        text.append(f"\n{label(lang, 'shift_repeated')}\n", style="bold")
        if not report.repeated:
            text.append(f"  {label(lang, 'floor_none')}\n", style="italic")
        for machine, code, times in report.repeated:
            text.append(f"  {machine:<8} {code:<10} ×{times}\n")
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
