"""`shifu_adapter.json`: what a trained adapter folder says about itself.

Training writes it next to PEFT's `adapter_config.json` and `adapter_model.safetensors`;
`shifu model export` reads it to name the GGUF architecture, to permute q/k for llama bases
and to record the base model's sha256 in the registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kb.errors import ModelError

META_FILE = "shifu_adapter.json"


@dataclass
class AdapterMeta:
    architecture: str  # GGUF architecture name of the base: llama, qwen2
    n_head: int
    n_head_kv: int
    n_layer: int
    base_gguf: str = ""  # the base GGUF the adapter runs on, when known on this machine
    base_sha256: str = ""
    n_ctx: int = 4096
    recipe: str = ""
    backend: str = ""
    steps: int = 0
    examples: int = 0
    final_loss: float | None = None
    eval_loss: float | None = None
    train_seconds: float = 0.0
    system_prompt_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        (folder / META_FILE).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")


def read_meta(folder: Path) -> AdapterMeta:
    path = folder / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return AdapterMeta(**data)
    except FileNotFoundError as error:
        raise ModelError(f"{folder} holds no {META_FILE}; it was not trained by `shifu model finetune`") from error
    except (ValueError, TypeError) as error:
        raise ModelError(f"{path} is unreadable: {error}") from error
