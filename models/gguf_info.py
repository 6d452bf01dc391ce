"""What a GGUF file says about itself (architecture, heads, layers, context), via the `gguf` package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb.errors import ModelError


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    file_type: str  # general.type: model | adapter
    n_head: int
    n_head_kv: int
    n_layer: int
    n_ctx: int
    lora_alpha: float | None = None


def _value(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def read_info(path: Path) -> GGUFInfo:
    """Read the header of a base model or adapter GGUF."""
    try:
        from gguf import GGUFReader
    except ImportError as error:
        raise ModelError("the `gguf` package is missing; install the finetune extra: pip install '.[finetune]'") \
            from error
    try:
        reader = GGUFReader(str(path))
    except Exception as error:  # the reader raises ValueError/struct errors on damaged files
        raise ModelError(f"{path} is not a readable GGUF file: {error}") from error
    arch = str(_value(reader, "general.architecture", ""))
    n_head = int(_value(reader, f"{arch}.attention.head_count", 0) or 0)
    return GGUFInfo(
        architecture=arch,
        file_type=str(_value(reader, "general.type", "model")),
        n_head=n_head,
        n_head_kv=int(_value(reader, f"{arch}.attention.head_count_kv", n_head) or n_head),
        n_layer=int(_value(reader, f"{arch}.block_count", 0) or 0),
        n_ctx=int(_value(reader, f"{arch}.context_length", 0) or 0),
        lora_alpha=float(_value(reader, "adapter.lora.alpha")) if "adapter.lora.alpha" in reader.fields else None,
    )
