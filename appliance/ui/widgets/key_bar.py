"""The function keys the operator can press, labelled in the current language."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from appliance.ui.labels import label

KEYS = (
    ("F1", "key_fixed"),
    ("F2", "key_not_fixed"),
    ("F3", "key_call"),
    ("F4", "key_machine"),
    ("F5", "key_lang"),
    ("Esc", "key_clear"),
    ("F9", "key_tech"),
)


class KeyBar(Static):
    def set_lang(self, lang: str) -> None:
        text = Text()
        for key, name in KEYS:
            text.append(f" {key} ", style="bold reverse")
            text.append(f"{label(lang, name)} ")
        self.update(text)
