"""In-process llama.cpp through llama-cpp-python (the default backend).

The model is loaded once and kept warm. Prompts are rendered with `models.prompt.chatml`
so the fixed system prompt is always the first tokens: llama-cpp-python keeps the KV
cache of the previous prompt and evaluates only the tokens after the common prefix.
Answers are constrained by a GBNF grammar compiled from the answer's JSON schema.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo, StreamStats
from kb.errors import ModelError
from models import prompt
from models.registry import ModelEntry, file_sha256

GGUF_MAGIC = b"GGUF"


class LlamaCppBackend(LLMBackend):
    name = "llama_cpp"

    def __init__(
        self,
        base: ModelEntry,
        adapter: ModelEntry | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        flash_attn: bool = False,
        hash_cache: Path | None = None,
    ) -> None:
        self.base = base
        self.adapter = adapter
        self.n_ctx = n_ctx
        # One core stays free for the UI, retrieval and the serial readers; llama.cpp threads
        # spin while they wait, so oversubscribing the cores slows generation down tenfold.
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) - 1)
        self.n_gpu_layers = n_gpu_layers
        self.flash_attn = flash_attn
        self.hash_cache = hash_cache
        self._llm: Any = None
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None
        self._stats = StreamStats()

    # -- loading ---------------------------------------------------------------------------
    def _check_file(self, path: Path, what: str) -> None:
        if not path.exists():
            raise ModelError(f"{what} file {path} does not exist; reinstall it or fix the model registry")
        with open(path, "rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                raise ModelError(f"{what} file {path} is not a GGUF file (corrupt or truncated); replace it")

    def load(self) -> None:
        with self._lock:
            if self._llm is not None:
                return
            self._check_file(self.base.path, "model")
            base_sha = file_sha256(self.base.path, self.hash_cache)
            if self.base.sha256 and base_sha != self.base.sha256:
                raise ModelError(
                    f"model file {self.base.path} does not match its registry hash; it is corrupt or was replaced"
                )
            adapter_sha = ""
            if self.adapter is not None:
                self._check_file(self.adapter.path, "adapter")
                adapter_sha = file_sha256(self.adapter.path, self.hash_cache)
                if self.adapter.base_sha256 and self.adapter.base_sha256 != base_sha:
                    raise ModelError(
                        f"adapter {self.adapter.id} was trained for another base model; activate its base or another adapter"
                    )
            try:
                from llama_cpp import Llama
            except ImportError as error:
                raise ModelError("llama-cpp-python is not installed; run the README's setup command") from error
            try:
                self._llm = Llama(
                    model_path=str(self.base.path),
                    lora_path=str(self.adapter.path) if self.adapter else None,
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_gpu_layers=self.n_gpu_layers,
                    flash_attn=self.flash_attn,
                    seed=1234,
                    verbose=False,
                )
            except Exception as error:  # llama.cpp reports load failures as ValueError/RuntimeError
                raise ModelError(f"cannot load model {self.base.path.name}: {error}") from error
            try:
                from llama_cpp import llama_cpp as lib

                offload = bool(lib.llama_supports_gpu_offload())
            except Exception:
                offload = False
            device = "GPU" if offload and self.n_gpu_layers != 0 else "CPU"
            self._info = ModelInfo(
                backend=self.name,
                base_id=self.base.id,
                base_sha256=base_sha,
                adapter_id=self.adapter.id if self.adapter else "",
                adapter_sha256=adapter_sha,
                device=device,
                languages=self.base.languages,
                extra={"n_ctx": self.n_ctx, "n_threads": self.n_threads, "n_gpu_layers": self.n_gpu_layers},
            )

    def info(self) -> ModelInfo:
        if self._info is None:
            self.load()
        assert self._info is not None
        return self._info

    @property
    def llama(self) -> Any:
        self.load()
        return self._llm

    def grammar(self, schema: dict[str, Any]) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        text = json.dumps(schema)  # property order is kept: summary streams first
        if text not in self._grammars:
            self._grammars[text] = LlamaGrammar.from_json_schema(text, verbose=False)
        return self._grammars[text]

    # -- generation ------------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        return prompt.chatml(messages)

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        llm = self.llama
        text = self.render(messages)
        grammar = self.grammar(options.json_schema) if options.json_schema else None
        with self._lock:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) + 16 >= self.n_ctx:
                raise ModelError(f"prompt of {len(tokens)} tokens does not fit the context of {self.n_ctx}")
            cached = llm.n_tokens
            common = 0
            previous = llm.input_ids[:cached].tolist() if cached else []
            for a, b in zip(previous, tokens, strict=False):
                if a != b:
                    break
                common += 1
            self._stats = StreamStats(prompt_tokens=len(tokens), evaluated_prompt_tokens=len(tokens) - common)
            max_tokens = min(options.max_tokens, self.n_ctx - len(tokens) - 1)
            if options.interrupt is not None and not self._prefill(llm, tokens, common, options):
                self._stats.finish_reason = "interrupted"
                return
            try:
                pieces = llm.create_completion(
                    tokens,
                    max_tokens=max_tokens,
                    temperature=options.temperature,
                    repeat_penalty=options.repeat_penalty,
                    seed=options.seed,
                    stop=options.stop or prompt.STOP,
                    grammar=grammar,
                    stream=True,
                )
                for piece in pieces:
                    choice = piece["choices"][0]
                    if choice.get("text"):
                        self._stats.completion_tokens += 1
                        yield choice["text"]
                    if choice.get("finish_reason"):
                        self._stats.finish_reason = str(choice["finish_reason"])
            except ModelError:
                raise
            except GeneratorExit:
                raise
            except Exception as error:
                raise ModelError(f"generation failed: {error}") from error

    @staticmethod
    def _prefill(llm: Any, tokens: list[int], common: int, options: GenerateOptions) -> bool:
        """Evaluate the prompt after the cached prefix in chunks, asking `interrupt` in between.

        A background answer's prompt takes seconds on a CPU; evaluated in one call it would keep
        an operator waiting that long. All but the last token are evaluated here; the completion
        then finds them in the KV cache and evaluates only the last one. False: interrupted.
        """
        assert options.interrupt is not None
        todo = tokens[common:-1]
        if not todo:
            return not options.interrupt()
        llm.n_tokens = common  # eval() drops the KV cache after n_tokens first
        step = max(8, options.prefill_chunk)
        for start in range(0, len(todo), step):
            if options.interrupt():
                return False
            llm.eval(todo[start:start + step])
        return not options.interrupt()

    def last_stats(self) -> StreamStats:
        return self._stats

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
