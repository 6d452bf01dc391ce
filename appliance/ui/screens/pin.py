"""PIN entry for technician mode (a modal over the operator screen)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from appliance.ui.labels import label


@dataclass(frozen=True)
class PinVerdict:
    """The result of checking one PIN: accepted, or a message; `final` closes the dialog."""

    ok: bool
    message: str = ""
    final: bool = False


class PinScreen(ModalScreen[bool]):
    """Dismisses with True when the PIN was accepted, False otherwise."""

    BINDINGS = [Binding("escape", "cancel", show=False)]

    def __init__(self, lang: str, check: Callable[[str], PinVerdict]) -> None:
        super().__init__()
        self.lang = lang
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="pin-box"):
            yield Static(label(self.lang, "pin_title"), id="pin-title")
            yield Static(label(self.lang, "pin_prompt"))
            yield Input(password=True, max_length=64, id="pin-input")
            yield Static("", id="pin-message")

    def on_mount(self) -> None:
        self.query_one("#pin-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        verdict = self.check(event.value)
        event.input.value = ""
        if verdict.ok:
            self.dismiss(True)
        elif verdict.final:
            self.app.notify(verdict.message, severity="error")
            self.dismiss(False)
        else:
            self.query_one("#pin-message", Static).update(verdict.message)

    def action_cancel(self) -> None:
        self.dismiss(False)
