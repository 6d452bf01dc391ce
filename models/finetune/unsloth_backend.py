"""The `unsloth` backend: QLoRA (4-bit base, 16-bit LoRA) on a CUDA GPU — the production path.

Production recipe (`models/recipes/qwen2.5-7b-unsloth.toml`): Qwen2.5-7B-Instruct loaded in
4-bit NF4 through Unsloth (`unsloth/Qwen2.5-7B-Instruct-bnb-4bit`), LoRA rank 16, alpha 32,
dropout 0, on q/k/v/o and gate/up/down, learning rate 2e-4, cosine decay with 10 warmup steps,
batch 4 x 4 accumulation (16 sequences per step), sequence length 2048, 2 epochs, gradient
checkpointing ("unsloth" mode).

Memory and time are estimates from the model's size, not measurements (this project's
machines have no GPU; check them on the first rented run): the 4-bit 7B base takes ~5.5 GB, activations
with gradient checkpointing at 4 x 2048 tokens another 5-7 GB, so ~12-14 GB of VRAM: an RTX
4090/A10G (24 GB) is comfortable, a 16 GB card works with batch 2 x 8. A plant's month is a
few thousand examples of ~700 Qwen tokens (Chinese is 1-1.5 tokens per character with
Qwen's tokenizer); 3,000 examples x 2 epochs = 375 steps at ~4-6 s per step on an A10G/4090,
i.e. 25-40 minutes of training plus ~10 minutes for setup, download and export: about one
rented GPU hour per month. The adapter (rank 16 on all seven projections) is ~80 MB in f16.

The loop, the loss on answer tokens, the outputs and the export are shared with the `peft`
backend; only loading differs. Unsloth is imported only here and only when CUDA is present.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kb.errors import ModelError
from models.finetune.backend import Loaded, Progress
from models.finetune.recipe import Recipe

GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}


def require_cuda() -> None:
    if not torch.cuda.is_available():
        raise ModelError("the unsloth backend needs a CUDA GPU; on this machine use a recipe with backend = \"peft\"")


def load(recipe: Recipe, progress: Progress) -> Loaded:
    require_cuda()
    try:
        from unsloth import FastLanguageModel
    except ImportError as error:
        raise ModelError("unsloth is not installed on this GPU machine: pip install unsloth") from error
    if not recipe.base.hf:
        raise ModelError(f"recipe {recipe.name}: the unsloth backend trains from [base] hf (a model folder or id)")
    progress(f"loading {recipe.base.hf} in 4-bit on {torch.cuda.get_device_name(0)}")
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=recipe.base.hf, max_seq_length=recipe.train.seq_len, load_in_4bit=True, dtype=None,
    )
    model = FastLanguageModel.get_peft_model(
        model, r=recipe.lora.rank, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
        target_modules=list(recipe.lora.target_modules), bias="none",
        use_gradient_checkpointing="unsloth", random_state=recipe.train.seed,
    )
    FastLanguageModel.for_training(model)
    config = model.config
    arch = GGUF_ARCH.get(config.model_type)
    if arch is None:
        raise ModelError(f"model type {config.model_type} is not supported by the GGUF export (llama, qwen2)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    return Loaded(
        model=model, encode=encode, pad_id=int(pad), device=torch.device("cuda"), architecture=arch,
        n_head=int(config.num_attention_heads),
        n_head_kv=int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
        n_layer=int(config.num_hidden_layers), n_ctx=int(getattr(config, "max_position_embeddings", 32768)),
    )


def save(loaded: Loaded, out: Path) -> None:
    loaded.model.save_pretrained(str(out))  # LoRA weights only, as PEFT writes them
