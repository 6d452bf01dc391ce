"""Real, tiny LoRA adapter GGUFs for the embedded base (written with the `gguf` package).

Rank-1 adapters on a few attention projections of SmolLM2-135M: llama.cpp loads and applies
them like any trained adapter, in milliseconds. `values` chooses what the B matrices hold:
small seeded numbers (a working adapter that shifts the logits), NaN (an adapter that loads but
breaks every answer: what the health check must catch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def base_shapes(base: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(base))
    arch = str(reader.fields["general.architecture"].contents())
    return arch, {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}


def write_adapter(out: Path, base: Path, *, base_sha256: str = "", values: str = "small", seed: int = 7, scale: float = 0.05,
                  layers: tuple[int, ...] = (0, 1), architecture: str | None = None,
                  extra_tensors: dict[str, tuple[int, ...]] | None = None) -> Path:
    """A LoRA GGUF for `base`; `architecture` and `extra_tensors` (ne shapes) make deliberately wrong ones."""
    import gguf

    arch, shapes = base_shapes(base)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(out), architecture or arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 1.0)
    if base_sha256:
        writer.add_string("shifu.base_sha256", base_sha256)
    for layer in layers:
        for proj in ("attn_q", "attn_v"):
            n_in, n_out = shapes[f"blk.{layer}.{proj}.weight"][:2]
            lora_a = rng.normal(0, scale, size=(1, n_in)).astype(np.float32)  # ne [n_in, r]
            if values == "nan":
                lora_b = np.full((n_out, 1), np.nan, dtype=np.float32)  # ne [r, n_out]
            else:
                lora_b = rng.normal(0, scale, size=(n_out, 1)).astype(np.float32)
            writer.add_tensor(f"blk.{layer}.{proj}.weight.lora_a", lora_a)
            writer.add_tensor(f"blk.{layer}.{proj}.weight.lora_b", lora_b)
    for name, ne in (extra_tensors or {}).items():
        writer.add_tensor(name, np.zeros(tuple(reversed(ne)), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
