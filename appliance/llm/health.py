"""A model pair's health check: load it and let it generate a few tokens.

Run after every activation (a USB import, `shifu model activate`) on the CPU in the importing
process, and inside a serving process when it switches to a new pair. A pair that loads but
computes NaN or infinite logits (a broken adapter) or produces nothing fails: the previous
pair stays active.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.llm.base import GenerateOptions, LLMBackend
from kb.errors import ModelError
from models import prompt
from models.registry import ModelEntry, Registry

PROBE = [{"role": "system", "content": "You are a maintenance assistant."},
         {"role": "user", "content": "Reply with one word: ready"}]
PROBE_TOKENS = 4


def smoke_test(backend: LLMBackend) -> None:
    """Generate a few tokens from a loaded backend; raise ModelError when it cannot."""
    from appliance.llm.llama_cpp import LlamaCppBackend

    if isinstance(backend, LlamaCppBackend):
        _finite_logits(backend)
    pieces = list(backend.stream(PROBE, GenerateOptions(max_tokens=PROBE_TOKENS, temperature=0.0)))
    if not "".join(pieces).strip():
        raise ModelError("the model generated nothing for the health-check prompt")


def _finite_logits(backend: object) -> None:
    llm = backend.llama  # type: ignore[attr-defined]
    tokens = llm.tokenize(prompt.chatml(PROBE).encode("utf-8"), add_bos=False, special=True)
    llm.reset()
    llm.eval(tokens)
    from llama_cpp import llama_cpp as lib

    logits = lib.llama_get_logits_ith(llm.ctx, -1)  # the last prompt token's row
    bad = int((~np.isfinite(np.ctypeslib.as_array(logits, shape=(llm.n_vocab(),)))).sum())
    llm.reset()
    if bad:
        raise ModelError(f"the model computes {bad} non-finite logits (NaN or infinite) for the health-check prompt; "
                         "the adapter or base file is broken")


def health_check(base: ModelEntry, adapter: ModelEntry | None, *, hash_cache: Path | None = None,
                 n_threads: int | None = None) -> None:
    """Load base + adapter on the CPU (a small context) and run `smoke_test`; always released again.

    The loader checks the hashes and the GGUF headers (models.gguf_check) before llama.cpp opens them."""
    from appliance import paths
    from appliance.llm.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(base, adapter, n_ctx=512, n_threads=n_threads, n_gpu_layers=0, hash_cache=hash_cache,
                              boot_hashes=paths.boot_hash_file())
    try:
        backend.load()
        smoke_test(backend)
    finally:
        backend.close()


def check_activation(registry: Registry, *, hash_cache: Path | None = None) -> None:
    """The registry's active pair, as it is about to be saved, loads and generates; else ModelError."""
    base, adapter = registry.base(), registry.adapter()
    try:
        health_check(base, adapter, hash_cache=hash_cache)
    except ModelError as error:
        pair = base.id + (f" + adapter {adapter.id}" if adapter else "")
        raise ModelError(f"{pair} failed its health check, the previous model stays active: {error}") from error
