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
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo, StreamStats
from kb.errors import ModelError
from models import boot_hashes, prompt
from models.gguf_check import check_pair
from models.gguf_header import read_header
from models.registry import ModelEntry, fd_sha256

GGUF_MAGIC = b"GGUF"
GRAMMARS = 64


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
        boot_hashes: Path | None = None,
        prompt_lookup_tokens: int = 0,
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
        self.boot_hashes = boot_hashes  # written by the root step this boot (models.boot_hashes)
        self.prompt_lookup_tokens = prompt_lookup_tokens
        """Tokens proposed per step by prompt-lookup decoding (0 = off); read at every generation."""
        self._llm: Any = None
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None
        self._stats = StreamStats()

    # -- loading ---------------------------------------------------------------------------
    def _open_verified(self, entry: ModelEntry, what: str) -> tuple[int, str]:
        """Open a model file, check its magic and its sha256 against the registry; return (fd, sha256).

        llama.cpp then opens `/proc/self/fd/N`, the very inode that was hashed, so the file is
        never parsed before its hash matched (GGUF parsers have had memory-safety bugs) and a
        rename between the check and the load changes nothing. The hash comes from what the root
        step hashed this boot (`boot_hashes`, models.boot_hashes), from the per-boot cache
        (`hash_cache`, models.registry.fd_sha256: boot id, device, inode, size, mtime and ctime
        must all be unchanged) or is computed by reading the whole file.
        """
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError as error:
            raise ModelError(f"{what} file {entry.path} does not exist; reinstall it or fix the model registry") from error
        except OSError as error:
            raise ModelError(f"{what} file {entry.path} cannot be opened: {error}") from error
        try:
            if os.pread(fd, 4, 0) != GGUF_MAGIC:
                raise ModelError(f"{what} file {entry.path} is not a GGUF file (corrupt or truncated); replace it")
            sha = boot_hashes.lookup(fd, self.boot_hashes) or fd_sha256(fd, self.hash_cache)
            if entry.sha256 and sha != entry.sha256:
                raise ModelError(
                    f"{what} file {entry.path} does not match its registry hash (sha256 {sha[:12]}, registry "
                    f"{entry.sha256[:12]}); it is corrupt or was replaced: not loaded. Restore it from its bundle "
                    "and run `shifu model verify`"
                )
        except BaseException:
            os.close(fd)
            raise
        return fd, sha

    @staticmethod
    def _fd_path(fd: int, path: Path) -> str:
        proc = f"/proc/self/fd/{fd}"
        return proc if os.path.exists(proc) else str(path)

    def load(self) -> None:
        with self._lock:
            if self._llm is not None:
                return
            fds: list[int] = []
            try:
                self._load(fds)
            finally:
                for fd in fds:
                    os.close(fd)

    def _load(self, fds: list[int]) -> None:
        base_fd, base_sha = self._open_verified(self.base, "model")
        fds.append(base_fd)
        adapter_sha = ""
        adapter_path: str | None = None
        if self.adapter is not None:
            adapter_fd, adapter_sha = self._open_verified(self.adapter, "adapter")
            fds.append(adapter_fd)
            adapter_path = self._fd_path(adapter_fd, self.adapter.path)
            if self.adapter.base_sha256 and self.adapter.base_sha256 != base_sha:
                raise ModelError(
                    f"adapter {self.adapter.id} was trained for another base model; activate its base or another adapter"
                )
        # The headers of the very files that were hashed, before llama.cpp parses anything.
        base_header = read_header(base_fd, f"model file {self.base.path}")
        check_pair(replace(self.base, sha256=base_sha), self.adapter, base_header=base_header,
                   adapter_header=read_header(fds[1], f"adapter file {self.adapter.path}") if self.adapter else None)
        try:
            from llama_cpp import Llama  # noqa: F401 - a clear message when it is missing
        except ImportError as error:
            raise ModelError("llama-cpp-python is not installed; run the README's setup command") from error
        try:
            self._llm = bounded_llama()(
                model_path=self._fd_path(base_fd, self.base.path),
                lora_path=adapter_path,
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
            answer_mode=self.base.answer_mode,
            verified=bool(self.base.sha256) and (self.adapter is None or bool(self.adapter.sha256)),
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

    def grammar(self, schema: dict[str, Any] | None = None, gbnf: str | None = None) -> Any:
        """The grammar for a JSON schema (converted once, kept) or a GBNF text (quote mode's, per
        passage set: the most recent `GRAMMARS` are kept)."""
        from llama_cpp.llama_grammar import LlamaGrammar

        if gbnf is not None:
            key = gbnf
            if key not in self._grammars:
                self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
        else:
            key = json.dumps(schema)  # property order is kept: summary streams first
            if key not in self._grammars:
                self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        self._grammars[key] = self._grammars.pop(key)  # most recently used last
        while len(self._grammars) > GRAMMARS:
            del self._grammars[next(iter(self._grammars))]
        return self._grammars[key]

    # -- generation ------------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        return prompt.chatml(messages)

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        llm = self.llama
        text = self.render(messages)
        grammar = None
        if options.grammar:
            grammar = self.grammar(gbnf=options.grammar)
        elif options.json_schema:
            grammar = self.grammar(options.json_schema)
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
            use_prompt_lookup(llm, self.prompt_lookup_tokens)
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


def use_prompt_lookup(llm: Any, tokens: int) -> None:
    """Turn prompt-lookup decoding on (`tokens` proposed per step, copied from the prompt where its last
    two tokens occurred before) or off (0) for the next generation of a `bounded_llama()` model."""
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    llm.output_tail = 1 + max(0, tokens)
    current = llm.draft_model
    if tokens <= 0:
        llm.draft_model = None
    elif current is None or current.num_pred_tokens != tokens:
        llm.draft_model = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=tokens)


_BOUNDED: Any = None


def bounded_llama() -> Any:
    """`llama_cpp.Llama` whose evaluation asks llama.cpp for the logits of the last `output_tail` tokens
    of each call only.

    llama-cpp-python's own draft path needs `logits_all=True`, which keeps n_ctx x vocabulary floats
    in host memory (0.8 GB for SmolLM2 at 4k context, about 5 GB for Qwen2.5-7B at 8k) and computes
    the output layer for every prompt token. Sampling reads the logits from llama.cpp's context, not
    from that array, so the verification of k proposed tokens needs only the last k + 1 rows: with
    `output_tail = 1` (prompt lookup off) this is exactly the stock evaluation.
    """
    global _BOUNDED
    if _BOUNDED is not None:
        return _BOUNDED
    from llama_cpp import Llama

    class BoundedLlama(Llama):  # type: ignore[misc]
        output_tail = 1

        def eval(self, tokens: Any) -> None:
            self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
            for start in range(0, len(tokens), self.n_batch):
                batch = tokens[start:start + self.n_batch]
                n_past = self.n_tokens
                self._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
                if start + self.n_batch >= len(tokens):  # the last chunk: the rows sampling may read
                    for i in range(max(0, len(batch) - self.output_tail), len(batch)):
                        self._batch.batch.logits[i] = True
                self._ctx.decode(self._batch)
                self.input_ids[n_past:n_past + len(batch)] = batch
                self.n_tokens += len(batch)
                self._requires_eval = False

    _BOUNDED = BoundedLlama
    return _BOUNDED
