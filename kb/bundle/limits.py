"""Size and count limits for bundles: a hostile stick must not fill the disk or exhaust memory."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What a bundle may hold; anything beyond is refused before it is used."""

    max_files: int = 5000
    max_file_bytes: int = 16 * GIB
    max_total_bytes: int = 32 * GIB
    max_manifest_bytes: int = 4 * MIB
    max_signature_bytes: int = 1024
    max_path_chars: int = 400
    max_depth: int = 12

    @classmethod
    def from_settings(cls, section: Any | None) -> Limits:
        """Limits from a settings section with the same field names (missing ones keep defaults)."""
        if section is None:
            return cls()
        values = {f.name: getattr(section, f.name) for f in fields(cls) if hasattr(section, f.name)}
        return cls(**values)


def human(size: int) -> str:
    """A byte count people can read."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
