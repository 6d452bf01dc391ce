"""Choose the machine from the inventory (F4): a modal list, Enter chooses, Esc cancels."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from appliance.engine.client import Machine
from appliance.ui.labels import label

NO_MACHINE = "\x00none"  # the option id of "no machine"; never a real machine id


class MachineScreen(ModalScreen[str | None]):
    """Dismisses with the chosen machine id, "" for no machine, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", show=False)]

    def __init__(self, lang: str, machines: list[Machine], current: str) -> None:
        super().__init__()
        self.lang = lang
        self.machines = machines
        self.current = current

    def compose(self) -> ComposeResult:
        options = [Option(label(self.lang, "machine_pick_none"), id=NO_MACHINE)]
        for m in self.machines:
            where = " · ".join(p for p in (m.machine_model, m.line, m.location) if p)
            options.append(Option(f"{m.machine_id}  {where}", id=m.machine_id))
        with Vertical(id="machine-box"):
            yield Static(label(self.lang, "machine_pick_title"), id="machine-title")
            if not self.machines:
                yield Static(label(self.lang, "machine_list_empty"), id="machine-empty")
            yield OptionList(*options, id="machine-list")

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        menu.focus()
        ids = [m.machine_id for m in self.machines]
        menu.highlighted = ids.index(self.current) + 1 if self.current in ids else 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        chosen = event.option.id or NO_MACHINE
        self.dismiss("" if chosen == NO_MACHINE else chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)
