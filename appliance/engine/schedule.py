"""One model, one queue: scheduling lives here, around the backend, not in the engine.

`Scheduler.run(backend, messages, options, priority)` returns a `Run` to iterate for the
generated pieces. The operator (priority 0) streams at once, after whatever generation
holds the model. Background work (priority > 0: answers prepared for alarms, evaluation)
waits at the gate while anyone more urgent waits, and gives the model up between chunks
of prompt evaluation or tokens when an operator arrives; it then starts over (the prompt
prefix stays in the KV cache). A background run yields only the pieces of its last,
uninterrupted attempt, so its consumer never sees a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from appliance.engine.gate import PriorityGate
from appliance.llm.base import GenerateOptions, LLMBackend


class Run:
    """One scheduled generation; its counters belong to this call alone."""

    def __init__(self, gate: PriorityGate, backend: LLMBackend, messages: list[dict[str, str]],
                 options: GenerateOptions, priority: int) -> None:
        self.gate = gate
        self.backend = backend
        self.messages = messages
        self.options = options
        self.priority = priority
        self.preempted = 0
        self.started_at: float | None = None
        self.first_piece_at: float | None = None

    def __iter__(self) -> Iterator[str]:
        if self.priority <= 0:
            with self.gate.hold(self.priority):
                self.started_at = time.perf_counter()
                yield from self._attempt(self.options, None)
            return
        waiting = threading.Event()

        def yield_to_operator() -> bool:
            if self.gate.waiting(max_priority=self.priority - 1):
                waiting.set()
            return waiting.is_set()

        options = self.options.model_copy(update={"interrupt": yield_to_operator})
        while True:
            waiting.clear()
            with self.gate.hold(self.priority):
                self.started_at = time.perf_counter()
                pieces = list(self._attempt(options, yield_to_operator))
                done = not waiting.is_set()  # also set when prompt evaluation was given up
            if done:
                yield from pieces
                return
            self.preempted += 1

    def _attempt(self, options: GenerateOptions, stop: object) -> Iterator[str]:
        stream = self.backend.stream(self.messages, options)
        try:
            for piece in stream:
                if self.first_piece_at is None:
                    self.first_piece_at = time.perf_counter()
                yield piece
                if stop is not None and callable(stop) and stop():
                    return
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


class Scheduler:
    """The priority gate in front of the one loaded model."""

    def __init__(self, gate: PriorityGate | None = None) -> None:
        self.gate = gate or PriorityGate()

    def run(self, backend: LLMBackend, messages: list[dict[str, str]], options: GenerateOptions,
            priority: int = 0) -> Run:
        return Run(self.gate, backend, messages, options, priority)
