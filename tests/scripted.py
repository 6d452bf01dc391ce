"""A scripted model for tests that need exact model output (the guard, streaming frames).

It says what it is: a fake, used only where a test must control every byte the model
writes (an injected phone number copied into a step, say). Everything else in those tests
— KB, retrieval, engine, guard, SSE, CLI — is real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo


class ScriptedModel(LLMBackend):
    """Yields `text` (or `answer` as JSON) in pieces of `piece` characters."""

    name = "scripted"

    def __init__(self, answer: dict[str, Any] | None = None, *, text: str | None = None, piece: int = 3,
                 languages: tuple[str, ...] = ("zh-TW", "en")) -> None:
        self.text = text if text is not None else json.dumps(answer, ensure_ascii=False)
        self.piece = piece
        self.languages = languages
        self.prompts: list[list[dict[str, str]]] = []

    def load(self) -> None:
        pass

    def info(self) -> ModelInfo:
        return ModelInfo(backend="scripted", base_id="scripted-test", base_sha256="0" * 64, device="CPU",
                         languages=self.languages)

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.prompts.append(messages)
        for i in range(0, len(self.text), self.piece):
            yield self.text[i : i + self.piece]
