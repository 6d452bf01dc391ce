"""The answer: code header, standard procedure, history, streaming AI explanation, sources.

The standard procedure is drawn the moment `CodeFound` arrives; the generated explanation
is re-rendered from each guarded `Partial` (never from raw tokens) as the model writes. Everything drawn comes from
plain `rich.text.Text` (never markup), so text from manuals cannot inject styles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from appliance.engine.client import Machine
from appliance.engine.types import (
    Answer,
    CodeFound,
    Done,
    Event,
    Failed,
    HistoryFound,
    LikelyCodes,
    Partial,
    PassagesFound,
)
from appliance.ui.labels import label
from kb.types import CodeEntry, FixCount, Passage, RepairRecord

SECTIONS = ("header", "procedure", "notices", "history", "generated", "sources")
CHOICE_KEYS = ("F6", "F7", "F8", "F10", "F11", "F12")
"""Function keys that pick a choice (F9 is technician mode); Alt+1…9 pick the same choices.
Never bare digits: the input takes digits."""
MAX_CHOICES = 9


def choice_key(index: int) -> str:
    """The key shown for choice `index` (0-based): F6, F7, F8, F10…, then Alt+7…"""
    return CHOICE_KEYS[index] if index < len(CHOICE_KEYS) else f"Alt+{index + 1}"


@dataclass(frozen=True)
class Choice:
    """Something the operator can pick with a key: ask again for this code (and machine model)."""

    text: str
    machine_model: str = ""
    machine_id: str | None = None
    """The machine to ask for; None keeps the kiosk's machine."""


@dataclass
class AnswerState:
    """Everything received so far for one query."""

    query: str
    code: CodeFound | None = None
    fixes: tuple[FixCount, ...] = ()
    records: tuple[RepairRecord, ...] = ()
    passages: tuple[Passage, ...] = ()
    partial: dict[str, Any] | None = None
    likely: LikelyCodes | None = None
    answer: Answer | None = None
    notices: list[str] = field(default_factory=list)
    model_failed: bool = False

    @property
    def severity(self) -> str:
        entry = self.code.entry if self.code else None
        return entry.severity if entry else ""

    @property
    def audit_id(self) -> int | None:
        return self.answer.audit_id if self.answer else None

    def notice(self, text: str) -> None:
        """Add a notice once; the engine often repeats a failure inside a longer explanation."""
        if not text or any(text in old for old in self.notices):
            return
        self.notices = [old for old in self.notices if old not in text] + [text]


class AnswerView(VerticalScroll, can_focus=False):
    """Scrollable answer area; PageUp/PageDown are bound on the app so they work from the input."""

    def __init__(self, lang: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lang = lang
        self.state: AnswerState | None = None
        self.machines: list[Machine] = []
        """The inventory, to name the machines of each candidate model."""
        self.shown: dict[str, str] = {}
        """Plain text of each section as last drawn (what tests and the tmux smoke test read)."""

    def compose(self) -> ComposeResult:
        yield Static(id="answer-welcome")
        for name in SECTIONS:
            yield Static(id=f"answer-{name}", classes="answer-section")

    def on_mount(self) -> None:
        self.render_all()

    # -- state changes ---------------------------------------------------------------------
    def start(self, query: str) -> None:
        """A new query: forget the old answer and show nothing until its events arrive."""
        self.state = AnswerState(query=query)
        self.scroll_home(animate=False)
        self.render_all()

    def clear(self) -> None:
        self.state = None
        self.scroll_home(animate=False)
        self.render_all()

    def set_lang(self, lang: str) -> None:
        self.lang = lang
        self.render_all()

    def add_notice(self, text: str) -> None:
        if self.state is not None:
            self.state.notice(text)
            self._redraw("notices")

    def apply(self, event: Event) -> None:
        """Fold one engine event into the state and redraw the parts it changed."""
        state = self.state
        if state is None:
            return
        if isinstance(event, CodeFound):
            state.code = event
            self._redraw("header", "procedure")
        elif isinstance(event, LikelyCodes):
            state.likely = event
            self._redraw("procedure", "history")
        elif isinstance(event, HistoryFound):
            state.fixes, state.records = event.summary, event.records
            self._redraw("history")
        elif isinstance(event, PassagesFound):
            state.passages = event.passages
            for notice in event.notices:
                state.notice(notice)
            self._redraw("notices", "sources", "generated")
        elif isinstance(event, Partial):
            state.partial = event.generated
            self._redraw("generated")
        elif isinstance(event, Failed):
            if event.step in ("model", "generate"):
                state.model_failed = True
            state.notice(event.message)
            self._redraw("notices", "generated")
        elif isinstance(event, Done):
            state.answer = event.answer
            for notice in event.answer.notices:
                state.notice(notice)
            if event.answer.passages and not state.passages:
                state.passages = tuple(event.answer.passages)
            self._redraw("notices", "generated", "sources")

    # -- drawing ---------------------------------------------------------------------------
    def _section(self, name: str) -> Static:
        return self.query_one(f"#answer-{name}", Static)

    def _redraw(self, *names: str) -> None:
        for name in names:
            blocks: Blocks = getattr(self, f"_{name}")()
            section = self._section(name)
            self.shown[name] = "\n".join(_plain(b) for b in blocks)
            section.update(Group(*(_renderable(b) for b in blocks)))
            section.display = name == "header" or bool(blocks)
        self._section("header").set_class(self.state is not None and self.state.severity == "critical", "critical")

    def render_all(self) -> None:
        welcome = self.query_one("#answer-welcome", Static)
        welcome.display = self.state is None
        welcome_text = Text.assemble((label(self.lang, "welcome"), "bold"), "\n\n", label(self.lang, "welcome_keys"))
        welcome.update(welcome_text)
        if self.state is None:
            self.shown = {"welcome": welcome_text.plain}
            for name in SECTIONS:
                self._section(name).display = False
        else:
            self._redraw(*SECTIONS)

    def _header(self) -> Blocks:
        state = self.state
        assert state is not None
        found = state.code
        if found is None:
            return [Text(state.query, style="bold")]
        entry = found.entry
        if entry is None:
            if found.codes_in_entry:
                return [Text(state.query, style="bold")]
            if found.normalized and found.candidates:
                return [Text.assemble((state.query, "bold"), "  ", (f" {label(self.lang, 'ambiguous_header')} ", "bold reverse"))]
            if found.normalized:
                text = Text.assemble((f"✗ {label(self.lang, 'unknown')}: ", "bold"), (state.query, "bold"))
                if found.suggestions:
                    text.append(f"\n{label(self.lang, 'suggest')}: {', '.join(found.suggestions)}")
                return [text]
            return [Text.assemble((f"{label(self.lang, 'symptom')}: ", "bold"), state.query)]
        severity = label(self.lang, f"severity_{entry.severity}")
        text = Text.assemble((entry.code, "bold"), "  ", (entry.title, "bold"), "  ")
        text.append(f" {severity} ", style=f"bold reverse {_severity_style(entry.severity)}")
        if entry.machine_model:
            text.append(f"  · {entry.machine_model}")
        if entry.severity == "critical":
            text.append(f"\n⚠ {label(self.lang, 'critical')}", style="bold")
        return [text]

    def _notices(self) -> Blocks:
        state = self.state
        assert state is not None
        return [Text("\n".join(f"ⓘ {n}" for n in state.notices), style="italic")] if state.notices else []

    def _procedure(self) -> Blocks:
        state = self.state
        assert state is not None
        entry = state.code.entry if state.code else None
        if entry is None:
            return self._no_row()
        blocks: Blocks = [_heading(label(self.lang, "steps"))]
        blocks.append([(f"{i}.", Text(step)) for i, step in enumerate(entry.steps, start=1)])
        if entry.safety:
            blocks.append(_heading(label(self.lang, "safety")))
            blocks.append([("⚠", Text(note, style="bold")) for note in entry.safety])
        return blocks

    def choices(self) -> list[tuple[Choice, str]]:
        """What the keys F6… / Alt+1… pick on this answer, with the text shown beside each key.

        Several known codes in the entry: each code. A code that differs by machine model: each
        model's row, naming the inventory's machines of that model. A symptom: its likely codes.
        """
        state = self.state
        found = state.code if state is not None else None
        if state is None or found is None or found.entry is not None:
            return []
        if found.codes_in_entry:
            return [(Choice(code), code) for code in found.codes_in_entry[:MAX_CHOICES]]
        if found.normalized and found.candidates:
            return [self._candidate(c) for c in found.candidates[:MAX_CHOICES]]
        if state.likely is not None:
            return [(Choice(c.entry.code, c.entry.machine_model),
                     f"{c.entry.code} {c.entry.title}" + (f" · {c.entry.machine_model}" if c.entry.machine_model else ""))
                    for c in state.likely.codes[:4]]
        return []

    def _candidate(self, entry: CodeEntry) -> tuple[Choice, str]:
        ids = [m.machine_id for m in self.machines if entry.machine_model and m.machine_model == entry.machine_model]
        where = (f"{label(self.lang, 'machines_of_model')} {', '.join(ids)}" if ids
                 else label(self.lang, "no_machines_of_model"))
        text = f"{entry.machine_model or '—'}: {entry.code} {entry.title} — {where}"
        # One machine of that model: ask for it (its history); several: ask for the model.
        choice = Choice(entry.code, entry.machine_model, ids[0] if len(ids) == 1 else "")
        return choice, text

    def _choice_rows(self) -> Rows:
        return [(choice_key(i), Text(text)) for i, (_, text) in enumerate(self.choices())]

    def _no_row(self) -> Blocks:
        """No single row: the codes in the entry, the models a code differs by, or what a symptom most likely is."""
        state = self.state
        assert state is not None
        found = state.code
        blocks: Blocks = []
        if found is not None and found.codes_in_entry:
            return [_heading(label(self.lang, "codes_in_entry")), Text(label(self.lang, "choose_hint"), style="italic"),
                    self._choice_rows()]
        if found is not None and found.normalized and found.candidates:
            return [_heading(label(self.lang, "ambiguous")), Text(label(self.lang, "choose_hint"), style="italic"),
                    self._choice_rows()]
        likely = state.likely
        if likely is None or not likely.codes:
            return blocks
        best = likely.codes[0].entry
        blocks.append(_heading(f"{label(self.lang, 'likely')} {best.code} {best.title}"
                               + (f" · {best.machine_model}" if best.machine_model else "")))
        blocks.append(Text(label(self.lang, "likely_note"), style="italic"))
        blocks.append([(f"{i}.", Text(step)) for i, step in enumerate(best.steps, start=1)])
        if best.safety:
            blocks.append([("⚠", Text(note, style="bold")) for note in best.safety])
        if len(likely.codes) > 1:
            blocks.append(Text(label(self.lang, "other_likely"), style="bold"))
            blocks.append(Text(label(self.lang, "choose_hint"), style="italic"))
            blocks.append(self._choice_rows())
        return blocks

    def _history(self) -> Blocks:
        state = self.state
        assert state is not None
        similar = state.likely.repairs if state.likely is not None else ()
        if similar and not state.fixes and not state.records:
            rows: Rows = [("·", Text(f"{r.record.code} {r.record.date} {r.record.machine_id}: {r.record.symptom} → "
                                     f"{r.record.action} ({r.fixed}/{r.total})")) for r in similar[:3]]
            return [_heading(label(self.lang, "similar_repairs")), rows]
        if not state.fixes and not state.records:
            return []
        times = label(self.lang, "times")
        blocks: Blocks = [_heading(label(self.lang, "history"))]
        if state.fixes:
            blocks.append(
                [("•", Text(f"{fix.action} ({fix.count}{times}, {fix.last_date})")) for fix in state.fixes[:3]]
            )
        if state.records:
            blocks.append(Text(label(self.lang, "recent"), style="bold"))
            blocks.append(
                [
                    ("·", Text(f"{r.date} {r.machine_id}: {r.symptom} → {r.action} ({r.result})"))
                    for r in state.records[:3]
                ]
            )
        return blocks

    def _generated(self) -> Blocks:
        state = self.state
        assert state is not None
        if state.code is None:
            return []
        answer = state.answer
        data: Any = answer.generated if answer is not None else state.partial
        blocks: Blocks = [_heading(label(self.lang, "generated"))]
        if not isinstance(data, dict):
            if answer is not None and answer.refused:
                blocks.append(Text(label(self.lang, "refused"), style="bold"))
            elif state.code.normalized and state.code.entry is None and state.code.candidates:
                blocks.append(Text(label(self.lang, "ai_waits"), style="italic"))
            elif state.model_failed or (answer is not None and not answer.model_available):
                blocks.append(Text(label(self.lang, "model_off"), style="italic"))
            elif answer is None:
                blocks.append(Text(label(self.lang, "waiting_model"), style="dim italic"))
            elif answer.model is not None and answer.generated is None and not answer.cached:
                blocks.append(Text(label(self.lang, "no_usable"), style="italic"))
            else:
                blocks.append(Text(label(self.lang, "not_generated"), style="italic"))
            return blocks
        if data.get("lang") and data.get("lang") != self.lang:
            blocks.append(Text(label(self.lang, "lang_fallback"), style="italic"))
        summary = str(data.get("summary") or "")
        if summary:
            blocks.append(Text(summary))
        steps = data.get("steps")
        rows: Rows = []
        quoted = any(isinstance(step, dict) and "quote" in step for step in steps or [])
        if quoted:
            blocks.append(Text(label(self.lang, "quoted_note"), style="italic"))
        for i, step in enumerate(steps if isinstance(steps, list) else [], start=1):
            if isinstance(step, dict):
                cites = "".join(f"[{n}]" for n in step.get("cites", []) or [] if isinstance(n, int))
                text = Text.assemble(str(step.get("text", "")), " ", (cites, "bold"))
                if not cites and step.get("source"):  # a sentence of the standard procedure itself
                    text.append(f"（{step['source']}）" if self.lang == "zh-TW" else f" ({step['source']})",
                                style="dim")
                rows.append((f"{i}.", text))
        rows.extend(("⚠", Text(str(note))) for note in data.get("safety") or [])
        if rows:
            blocks.append(rows)
        parts = data.get("parts") or []
        if parts:
            blocks.append(Text(f"{label(self.lang, 'parts')}: {', '.join(str(p) for p in parts)}"))
        if data.get("escalate") is True:
            blocks.append(Text(f"☎ {label(self.lang, 'escalate')}", style="bold"))
        return blocks

    def _sources(self) -> Blocks:
        state = self.state
        assert state is not None
        if not state.passages:
            return []
        rows: Rows = []
        for p in state.passages:
            page = f" ({label(self.lang, 'page')} {p.page})" if p.page else ""
            # One text shared by several machine models is one source naming them all.
            models = f" [{', '.join(p.machine_models)}]" if len(p.machine_models) > 1 else ""
            rows.append((f"[{p.n}]", Text(f"{p.source} > {p.section}{page}{models}")))
        return [_heading(label(self.lang, "sources")), rows]


Rows = list[tuple[str, Text]]
Blocks = list[Text | Rows]


def _heading(text: str) -> Text:
    return Text(text, style="bold underline")


def _renderable(block: Text | Rows) -> RenderableType:
    """Numbered rows become a grid, so wrapped lines hang under their text, not under the number."""
    if isinstance(block, Text):
        return block
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", no_wrap=True, style="bold")
    grid.add_column(ratio=1)
    for mark, text in block:
        grid.add_row(mark, text)
    return grid


def _plain(block: Text | Rows) -> str:
    if isinstance(block, Text):
        return block.plain
    return "\n".join(f"{mark} {text.plain}" for mark, text in block)


def _severity_style(severity: str) -> str:
    return {"critical": "red", "warning": "yellow", "info": "blue"}.get(severity, "")
