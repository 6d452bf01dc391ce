"""The `peft` backend: LoRA with PEFT on CPU (or a GPU when one is there), in float32.

The base loads straight from its GGUF through transformers' `gguf_file=` support: the
tensors are dequantized to float32 and the q/k rows that llama.cpp's converter permuted
are put back in Hugging Face order. Training the very file the appliance runs keeps the
adapter's base hash honest. A Hugging Face folder (`base.hf`) is used instead when given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from kb.errors import ModelError
from models.finetune.backend import Loaded, Progress
from models.finetune.recipe import Recipe

# transformers' model_type -> the GGUF architecture llama.cpp names it by
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}


def load_pretrained(recipe: Recipe, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model, tokenizer) for the recipe's base, from `base.hf` or the base GGUF (dequantized)."""
    if recipe.base.hf:
        tokenizer = AutoTokenizer.from_pretrained(recipe.base.hf)
        model = AutoModelForCausalLM.from_pretrained(recipe.base.hf, dtype=dtype)
        return model, tokenizer
    gguf = recipe.base_gguf()
    if gguf is None or not gguf.exists():
        raise ModelError(f"recipe {recipe.name}: base GGUF {gguf} does not exist; fix [base] gguf")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    return model, tokenizer


def load(recipe: Recipe, progress: Progress) -> Loaded:
    threads = recipe.train.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    progress(f"loading {recipe.base.hf or recipe.base_gguf()} ({device}, {threads} threads)")
    model, tokenizer = load_pretrained(recipe)
    config = model.config
    arch = GGUF_ARCH.get(config.model_type)
    if arch is None:
        raise ModelError(f"model type {config.model_type} is not supported by the GGUF export (llama, qwen2)")
    model.config.use_cache = False
    lora = LoraConfig(r=recipe.lora.rank, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
                      target_modules=list(recipe.lora.target_modules), bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora).to(device)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    progress(f"LoRA rank {recipe.lora.rank} alpha {recipe.lora.alpha} on {', '.join(recipe.lora.target_modules)}: "
             f"{trainable:,} trainable parameters")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    return Loaded(
        model=peft_model, encode=encode, pad_id=int(pad), device=device, architecture=arch,
        n_head=int(config.num_attention_heads), n_head_kv=int(getattr(config, "num_key_value_heads", None)
                                                               or config.num_attention_heads),
        n_layer=int(config.num_hidden_layers), n_ctx=int(getattr(config, "max_position_embeddings", 4096)),
    )


def save(loaded: Loaded, out: Path) -> None:
    loaded.model.save_pretrained(str(out))
