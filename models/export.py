"""A PEFT LoRA adapter -> a GGUF LoRA adapter that llama.cpp loads next to its base (`shifu model export`).

The file carries `general.architecture` equal to the base's, `general.type = adapter`,
`adapter.type = lora` and `adapter.lora.alpha`; llama.cpp scales each product by alpha / rank.
Tensors are named after the base tensor they modify, with `.lora_a` / `.lora_b` appended
(`blk.3.attn_q.weight.lora_a`), using the `gguf` package's own name map. lora_a keeps PEFT's
shape (rank x in) and lora_b (out x rank), which is what llama.cpp expects.

Why q/k are permuted for llama: llama.cpp's converter reorders the rows of every llama
q_proj and k_proj weight, within each head, from Hugging Face's "two halves" rotary layout to
the interleaved pairs llama.cpp rotates (transformers undoes it when it reads a GGUF, which is
why training saw Hugging Face order). An adapter's delta B @ A must be reordered the same way,
and since the rows of B @ A are the rows of B, only lora_B is permuted. Qwen2 GGUFs keep
Hugging Face order, so their adapters are written as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import ModelError
from models import prompt
from models.adapter_meta import AdapterMeta, read_meta

PEFT_PREFIX = "base_model.model."
# GGUF architectures whose q/k weights llama.cpp's converter permutes, and those it leaves alone.
PERMUTED_ARCHS = {"llama"}
PLAIN_ARCHS = {"qwen2"}


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder rows per head from [first halves | second halves] to interleaved pairs (llama.cpp's order).

    For each head of `d` rows, row `i` of the first half and row `i` of the second half become
    rows `2i` and `2i + 1`.
    """
    rows = weights.shape[0]
    if rows % (2 * n_head):
        raise ModelError(f"cannot permute {rows} rows into {n_head} heads of rotary pairs")
    half = rows // n_head // 2
    return weights.reshape(n_head, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def needs_permutation(architecture: str) -> bool:
    """Whether an adapter for this GGUF architecture needs lora_B of q/k permuted."""
    if architecture in PERMUTED_ARCHS:
        return True
    if architecture in PLAIN_ARCHS:
        return False
    raise ModelError(f"exporting adapters for '{architecture}' bases is not supported (llama, qwen2)")


def gguf_name(peft_key: str, architecture: str, n_layer: int) -> str:
    """`base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` -> `blk.3.attn_q.weight.lora_a`."""
    import gguf

    key = peft_key.removeprefix(PEFT_PREFIX)
    matrix = next((part for part in (".lora_A.weight", ".lora_B.weight") if key.endswith(part)), None)
    if matrix is None:
        raise ModelError(f"adapter tensor {peft_key} is not a LoRA A/B matrix (DoRA, biases and embeddings "
                         "are not supported)")
    base, suffix = key[: -len(matrix)], ".lora_a" if matrix == ".lora_A.weight" else ".lora_b"
    arch = {name: enum for enum, name in gguf.MODEL_ARCH_NAMES.items()}.get(architecture)
    if arch is None:
        raise ModelError(f"the gguf package does not know architecture {architecture}")
    mapped = gguf.get_tensor_name_map(arch, n_layer).get_name(base + ".weight", try_suffixes=(".weight",))
    if mapped is None:
        raise ModelError(f"no GGUF tensor corresponds to {base}")
    return mapped + suffix


def projection(peft_key: str) -> str:
    """The module a LoRA tensor belongs to: q_proj, k_proj, ..."""
    key = peft_key.removesuffix(".weight")
    return key.rsplit(".", 2)[-2]


@dataclass(frozen=True)
class Exported:
    path: Path
    tensors: int
    alpha: float
    rank: int
    permuted: int
    meta: AdapterMeta


def _load_config(folder: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelError(f"{folder} holds no adapter_config.json; is it a PEFT adapter folder?") from error
    if config.get("use_dora"):
        raise ModelError("DoRA adapters cannot be run by llama.cpp; train plain LoRA")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError("per-module ranks or alphas (rank_pattern/alpha_pattern) cannot be expressed in one GGUF")
    return config


def _load_tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    path = folder / "adapter_model.safetensors"
    if not path.exists():
        raise ModelError(f"{folder} holds no adapter_model.safetensors")
    tensors = {}
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            tensors[key] = handle.get_tensor(key).float().numpy()
    return tensors


def export_adapter(folder: Path, out: Path | None = None, *, dtype: str | None = None,
                   permute: bool = True, meta: AdapterMeta | None = None) -> Exported:
    """Write the GGUF LoRA file for a trained adapter folder (`permute=False` only for tests)."""
    import gguf

    meta = meta or read_meta(folder)
    config = _load_config(folder)
    rank = int(config["r"])
    alpha = float(config["lora_alpha"])
    if config.get("use_rslora"):
        alpha = alpha * math.sqrt(rank)  # rsLoRA scales by alpha / sqrt(r); llama.cpp divides by r
    dtype = dtype or str(meta.extra.get("export_dtype", "f16"))
    if dtype not in ("f16", "f32"):
        raise ModelError(f"export dtype must be f16 or f32, not {dtype}")
    permuted_arch = needs_permutation(meta.architecture)
    out = out or folder / f"{folder.name}.gguf"
    writer = gguf.GGUFWriter(str(out), meta.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(f"{meta.recipe or folder.name} LoRA")
    writer.add_string("shifu.base_sha256", meta.base_sha256)
    writer.add_string("shifu.system_prompt_sha256", meta.system_prompt_sha256)
    writer.add_string("shifu.chat_template", "chatml")
    count = permuted = 0
    for key, value in sorted(_load_tensors(folder).items()):
        name = gguf_name(key, meta.architecture, meta.n_layer)
        module = projection(key)
        if permute and permuted_arch and name.endswith(".lora_b") and module in ("q_proj", "k_proj"):
            value = permute_rows(value, meta.n_head if module == "q_proj" else meta.n_head_kv)
            permuted += 1
        writer.add_tensor(name, value.astype(np.float16 if dtype == "f16" else np.float32))
        count += 1
    if not count:
        raise ModelError(f"{folder} holds no LoRA tensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Exported(path=out, tensors=count, alpha=alpha, rank=rank, permuted=permuted, meta=meta)


OLLAMA_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def write_modelfile(adapter: Path, base: Path, out: Path | None = None) -> Path:
    """An Ollama Modelfile: the base, the adapter, the ChatML template and its stop tokens."""
    out = out or adapter.with_name("Modelfile")
    lines = [f"FROM {base}", f"ADAPTER {adapter}", f'TEMPLATE """{OLLAMA_TEMPLATE}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in prompt.STOP]
    lines += ["PARAMETER temperature 0", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return out
