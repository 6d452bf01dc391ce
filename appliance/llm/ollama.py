"""Ollama as the model, through the `ollama` client package.

The model is the one `shifu model export --ollama` describes in a Modelfile and
`ollama create NAME -f Modelfile` registers; `model.server_model` names it and
`model.server_url` is the Ollama host (`http://127.0.0.1:11434`). The answer schema goes
as `format` (Ollama compiles it to a grammar), sampling as `options`. The model's digest
from `/api/tags` is reported as its hash, so cached answers follow a re-created model.
Retries and the fallback to the standard procedure work as in `openai_server`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo, StreamStats
from appliance.llm.openai_server import RETRY_STATUS, RetryableError, timeout, with_retries
from kb.errors import ModelError


def _names(model: str) -> set[str]:
    """Ollama lists `name:latest` for a model created as `name`."""
    return {model, f"{model}:latest"} if ":" not in model else {model}


class OllamaBackend(LLMBackend):
    """Chat through Ollama's /api/chat, streamed."""

    name = "ollama"

    def __init__(
        self,
        host: str,
        model: str,
        *,
        n_ctx: int = 4096,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 3.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        keep_alive: str = "24h",
    ) -> None:
        try:
            import ollama
        except ImportError as error:
            raise ModelError("the `ollama` client package is not installed; reinstall Shifu") from error
        self._ollama = ollama
        self.host = _host(host)
        self.model = model
        self.n_ctx = n_ctx
        self.retries = retries
        self.backoff_s = backoff_s
        self.keep_alive = keep_alive  # one model for the whole plant: keep it loaded
        self.client = ollama.Client(host=self.host, timeout=timeout(timeout_s, connect_timeout_s))
        self._info: ModelInfo | None = None
        self._stats = StreamStats()
        self._lock = threading.Lock()

    def _call(self, what: str, function: Any) -> Any:
        def attempt() -> Any:
            try:
                return function()
            except self._ollama.ResponseError as error:
                if error.status_code in RETRY_STATUS:
                    raise RetryableError(f"HTTP {error.status_code} {error.error}") from error
                raise
            except ConnectionError as error:  # the client turns connect errors into ConnectionError
                raise RetryableError(str(error)) from error

        try:
            return with_retries(attempt, what=what, retries=self.retries, backoff_s=self.backoff_s)
        except self._ollama.ResponseError as error:
            raise ModelError(f"Ollama at {self.host} refused the request: {error.error} (HTTP {error.status_code})") \
                from error

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        with self._lock:
            if self._info is not None:
                return
            listing = self._call(f"Ollama at {self.host}", self.client.list)
            wanted = _names(self.model)
            found = [m for m in listing.models if (m.model or "") in wanted]
            if not found:
                have = ", ".join(sorted(m.model or "?" for m in listing.models)) or "none"
                raise ModelError(
                    f"Ollama at {self.host} has no model {self.model!r} (it has: {have}); create it with "
                    f"`ollama create {self.model} -f Modelfile` from `shifu model export --ollama`"
                )
            entry = found[0]
            self.model = entry.model or self.model  # the full name:tag Ollama knows it by
            digest = (entry.digest or "").removeprefix("sha256:")
            self._info = ModelInfo(
                backend=self.name, base_id=entry.model or self.model, base_sha256=digest, device="remote",
                extra={"url": self.host},
            )

    def info(self) -> ModelInfo:
        if self._info is None:
            self.load()
        assert self._info is not None
        return self._info

    # -- generation ------------------------------------------------------------------------
    def options(self, options: GenerateOptions) -> dict[str, Any]:
        """Ollama's sampling options for these generation options."""
        mapped: dict[str, Any] = {
            "temperature": options.temperature,
            "seed": options.seed,
            "num_predict": options.max_tokens,
            "repeat_penalty": options.repeat_penalty,
            "num_ctx": self.n_ctx,
        }
        if options.stop:
            mapped["stop"] = options.stop
        return mapped

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.load()
        self._stats = StreamStats()

        def first() -> tuple[Iterator[Any], Any]:
            # The client sends the request when its iterator is first advanced; the first part
            # is fetched inside the retry so a refused connection is retried, not a half answer.
            parts = self.client.chat(
                model=self.model, messages=messages, stream=True, format=options.json_schema,
                options=self.options(options), keep_alive=self.keep_alive,
            )
            return parts, next(parts, None)

        parts, part = self._call(f"Ollama at {self.host}", first)
        try:
            while part is not None:
                text = part.message.content if part.message is not None else ""
                if text:
                    self._stats.completion_tokens += 1
                    yield text
                if part.done:
                    self._stats.finish_reason = str(part.done_reason or "stop")
                    self._stats.prompt_tokens = int(part.prompt_eval_count or 0)
                    break
                part = next(parts, None)
        except self._ollama.ResponseError as error:
            raise ModelError(f"Ollama failed while answering: {error.error}") from error
        except Exception as error:  # httpx errors, a dropped connection, a broken line
            raise ModelError(
                f"Ollama at {self.host} stopped in the middle of the answer ({type(error).__name__}: {error})"
            ) from error
        finally:
            close = getattr(parts, "close", None)
            if close is not None:
                close()

    def last_stats(self) -> StreamStats:
        return self._stats

    def close(self) -> None:
        inner = getattr(self.client, "_client", None)
        if inner is not None:
            inner.close()


def _host(url: str) -> str:
    """`http://host:11434/v1` or `.../api` (an OpenAI-style URL) -> the Ollama host."""
    url = url.rstrip("/")
    for suffix in ("/v1", "/api"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url
