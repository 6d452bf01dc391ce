"""Prompt-lookup decoding against plain greedy decoding (issue 19 item 3), on the engine's own prompts.

Both variants start from the identical KV state: the prompt but its last token is evaluated once,
then each variant evaluates that last token alone and decodes (llama-cpp-python keeps the common
prefix), so a difference in output can only come from the batched verification of proposed tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.llm.base import GenerateOptions


@dataclass
class Pair:
    plain: list[str]
    lookup: list[str]
    plain_tok_s: float
    lookup_tok_s: float

    @property
    def identical(self) -> bool:
        return "".join(self.plain) == "".join(self.lookup)

    def first_difference(self) -> int | None:
        """Index of the first differing streamed piece (token), None when the outputs are identical."""
        if self.identical:
            return None
        for i, (a, b) in enumerate(zip(self.plain, self.lookup, strict=False)):
            if a != b:
                return i
        return min(len(self.plain), len(self.lookup))


def _prime(llm: Any, tokens: list[int]) -> None:
    """Leave exactly tokens[:-1] in the KV cache (reusing what is already there)."""
    cached = llm.input_ids[: llm.n_tokens].tolist()
    common = 0
    for a, b in zip(cached, tokens[:-1], strict=False):
        if a != b:
            break
        common += 1
    llm.n_tokens = common
    if tokens[common:-1]:
        llm.eval(tokens[common:-1])
    else:
        llm._ctx.kv_cache_seq_rm(-1, common, -1)


def _decode(backend: Any, messages: list[dict[str, str]], options: GenerateOptions, k: int) -> tuple[list[str], float]:
    backend.prompt_lookup_tokens = k
    pieces: list[str] = []
    first = last = 0.0
    for piece in backend.stream(messages, options):
        now = time.perf_counter()
        if not pieces:
            first = now
        last = now
        pieces.append(piece)
    # Prompt lookup yields several pieces at once: tokens/s from the first piece to the last.
    return pieces, (len(pieces) - 1) / (last - first) if len(pieces) > 1 and last > first else 0.0


def compare(backend: Any, calls: list[tuple[list[dict[str, str]], GenerateOptions]], k: int,
            max_tokens: int | None = None) -> list[Pair]:
    """Plain and prompt-lookup (k proposed tokens) greedy output for each captured engine call, on the
    in-process backend (LlamaCppBackend); the order alternates so a slow spell hits both."""
    from models import prompt

    llm = backend.llama
    saved = backend.prompt_lookup_tokens
    pairs = []
    try:
        for i, (messages, options) in enumerate(calls):
            if max_tokens is not None:
                options = options.model_copy(update={"max_tokens": max_tokens})
            tokens = llm.tokenize(prompt.chatml(messages).encode("utf-8"), add_bos=False, special=True)
            runs: dict[int, tuple[list[str], float]] = {}
            for variant in ((0, k) if i % 2 == 0 else (k, 0)):
                _prime(llm, tokens)
                runs[variant] = _decode(backend, messages, options, variant)
            pairs.append(Pair(runs[0][0], runs[k][0], runs[0][1], runs[k][1]))
    finally:
        backend.prompt_lookup_tokens = saved
    return pairs
