"""What a training backend hands to the shared loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Progress = Callable[[str], None]


@dataclass
class Loaded:
    """A base model wrapped with fresh LoRA weights, and how to tokenize for it."""

    model: Any
    encode: Callable[[str], list[int]]
    pad_id: int
    device: Any
    architecture: str  # GGUF architecture name: llama, qwen2
    n_head: int
    n_head_kv: int
    n_layer: int
    n_ctx: int
