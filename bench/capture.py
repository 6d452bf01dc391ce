"""A pass-through LLM backend that records what the engine asks the model (benchmarks and tests).

The engine's prompt and options (quote grammar or JSON schema) are replayed on raw
llama-cpp-python and on the other decoding variants, so both sides read identical tokens under
the identical grammar. `capture_only` records without generating (the answer then has no
explanation), which costs milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo, StreamStats


class Recorder(LLMBackend):
    name = "recorder"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[list[dict[str, str]], GenerateOptions]] = []
        self.capture_only = False
        self.called_at: float | None = None

    def load(self) -> None:
        self.inner.load()

    def info(self) -> ModelInfo:
        info: ModelInfo = self.inner.info()
        return info

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.calls.append((messages, options))
        self.called_at = time.perf_counter()
        if self.capture_only:
            return
        yield from self.inner.stream(messages, options)

    def last_stats(self) -> StreamStats:
        stats: StreamStats = self.inner.last_stats()
        return stats

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # base, llama, n_ctx, n_threads, ... of the real backend
        return getattr(self.inner, name)


def capture(engine: Any, recorder: Recorder, query: Any) -> tuple[list[dict[str, str]], GenerateOptions] | None:
    """The messages and options the engine would send the model for `query` (None: it would not ask)."""
    recorder.capture_only = True
    before = len(recorder.calls)
    use_cache, engine.use_cache = engine.use_cache, False
    try:
        engine.answer(query)
    finally:
        recorder.capture_only = False
        engine.use_cache = use_cache
    return recorder.calls[-1] if len(recorder.calls) > before else None
