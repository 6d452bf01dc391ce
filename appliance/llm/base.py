"""The LLM backend interface: stream text for chat messages under generation options."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GenerateOptions(BaseModel):
    """Per-call generation options."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = 640
    temperature: float = 0.0
    repeat_penalty: float = 1.0
    seed: int = 1234
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    """A GBNF grammar (quote mode); the in-process backend uses it instead of `json_schema`, server
    backends, which take a schema, use `json_schema`."""
    stop: list[str] = []
    # Background work only: asked between chunks of prompt evaluation; True gives the model up
    # before the first token (finish_reason "interrupted"). Backends that cannot stop mid-prompt
    # ignore it; the engine still preempts them between tokens.
    interrupt: Callable[[], bool] | None = Field(default=None, exclude=True)
    prefill_chunk: int = 64


@dataclass
class ModelInfo:
    """What answered: ids and hashes of base and adapter, and where it runs."""

    backend: str
    base_id: str = ""
    base_sha256: str = ""
    adapter_id: str = ""
    adapter_sha256: str = ""
    device: str = "CPU"
    languages: tuple[str, ...] = ("zh-TW", "en")
    """The languages the base model writes usably (models.toml `languages`)."""
    answer_mode: str = "free"
    """The base model's default answer mode (models.toml `answer_mode`): `free` or `quote`."""
    verified: bool | None = None
    """True: every file was checked against its registry hash before loading; False: a file named by
    `model.path`/`model.adapter` in the configuration was loaded with no hash to check; None: a
    server backend (the server owns its model files)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "base": self.base_id,
            "base_sha256": self.base_sha256,
            "adapter": self.adapter_id or None,
            "adapter_sha256": self.adapter_sha256 or None,
            "device": self.device,
            "languages": list(self.languages),
            "answer_mode": self.answer_mode,
            "verified": self.verified,
        }


@dataclass
class StreamStats:
    """Token counts of the last generation (for benchmarks and the audit log)."""

    prompt_tokens: int = 0
    evaluated_prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""


class LLMBackend(ABC):
    """One loaded model. `stream` yields text pieces; closing the iterator cancels."""

    name = "base"

    @abstractmethod
    def load(self) -> None:
        """Load the model now (raise ModelError when it cannot be loaded)."""

    @abstractmethod
    def info(self) -> ModelInfo:
        """Ids, hashes and device of the loaded model."""

    @abstractmethod
    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        """Yield generated text pieces; raise ModelError on failure."""

    def last_stats(self) -> StreamStats:
        return StreamStats()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""
