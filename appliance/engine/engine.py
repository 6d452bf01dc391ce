"""Engine.stream(query): the data flow of one question, as typed events.

normalize -> CodeFound -> HistoryFound -> PassagesFound -> (cache) -> Token... -> Done.
Steps 2-4 come from SQLite and the vector index in milliseconds, before the model is
asked; if the model is missing, slow or broken the operator still gets them, and a
final Done always arrives.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from appliance.config import Settings
from appliance.engine.gate import PriorityGate
from appliance.engine.guard import guard
from appliance.engine.types import (
    Answer,
    CodeFound,
    Done,
    Event,
    Failed,
    HistoryFound,
    PassagesFound,
    Query,
    Token,
)
from appliance.engine.validate import clean_query
from appliance.llm.base import GenerateOptions, LLMBackend
from appliance.store.opstore import OpStore
from kb.embed import Embedder
from kb.errors import KBError, ModelError, ShifuError
from kb.normalize import code_key, looks_like_code, normalize_text
from kb.reader import KnowledgeBase
from kb.repair import check_index, repair_in_background
from kb.search.rerank import CrossEncoderReranker, Tuning
from kb.types import CodeEntry, Passage
from kb.versions import VersionStore
from models import prompt

NOT_IN_KB = {
    "zh-TW": "知識庫中沒有這個問題的資料。請勿自行猜測處理方式，請呼叫技術人員。",
    "en": "This is not in the knowledge base. Do not guess a procedure; call a technician.",
}


class Engine:
    """Headless question answering over the active KB version and one model."""

    def __init__(
        self,
        settings: Settings,
        versions: VersionStore,
        *,
        backend_factory: Callable[[], LLMBackend] | None = None,
        opstore: OpStore | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.versions = versions
        self.opstore = opstore
        self.embedder = embedder
        self._backend_factory = backend_factory
        self._backend: LLMBackend | None = None
        self._backend_error: str | None = None
        self._kb: KnowledgeBase | None = None
        self._kb_lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self._repairing: set[Path] = set()
        self.gate = PriorityGate()
        self.use_cache = True

    # -- resources -------------------------------------------------------------------------
    def kb(self) -> KnowledgeBase:
        """The active KB version, reopened when `current` was switched (bundle import, rollback)."""
        with self._kb_lock:
            current = self.versions.current()
            if current is None:
                raise KBError(
                    "no knowledge base is active; build one with `shifu kb build SOURCE` or import a bundle"
                )
            if self._kb is None or self._kb.version != current or self._kb.dir != self.versions.path(current):
                if self._kb is not None:
                    self._kb.close()
                retrieval = self.settings.retrieval
                reranker = CrossEncoderReranker(retrieval.reranker_model) if retrieval.reranker_model else None
                path = self.versions.path(current)
                self._kb = KnowledgeBase(
                    path,
                    self.embedder if retrieval.dense else None,
                    rrf_k=retrieval.rrf_k,
                    tuning=Tuning(dense_cjk=retrieval.dense_cjk),
                    reranker=reranker,
                )
                if retrieval.dense and path not in self._repairing:
                    # A missing or broken vector index is rebuilt from SQLite in the background;
                    # meanwhile search runs on full-text alone, with a notice.
                    self._repairing.add(path)
                    try:
                        broken = check_index(path).problem is not None
                    except KBError:
                        broken = False  # the SQLite side is broken too: nothing to rebuild from
                    if broken:
                        repair_in_background(path)
            return self._kb

    def set_backend(self, backend: LLMBackend) -> None:
        """Use an already loaded backend (shared between engines, e.g. by `shifu eval`)."""
        self._backend = backend

    def backend(self) -> LLMBackend:
        """The loaded model (loaded on first use; a failure is raised as ModelError)."""
        if not self.settings.model.enabled or self._backend_factory is None:
            raise ModelError("the model is switched off in the configuration (model.enabled = false)")
        with self._backend_lock:
            if self._backend is None:
                backend = self._backend_factory()
                backend.load()
                self._backend = backend
            return self._backend

    def warm(self) -> str | None:
        """Load the model, KB and embedder now; return an error message or None."""
        problems = []
        try:
            kb = self.kb()
            if self.embedder is not None and self.settings.retrieval.dense:
                kb.search("warm up", 1)
        except ShifuError as error:
            problems.append(str(error))
        try:
            self.backend()
        except ShifuError as error:
            problems.append(str(error))
        return "; ".join(problems) or None

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        if self._kb is not None:
            self._kb.close()

    # -- answering -------------------------------------------------------------------------
    def answer(self, query: Query, *, use_model: bool = True) -> Answer:
        """Run the stream to the end and return the answer."""
        final: Answer | None = None
        for event in self.stream(query, use_model=use_model):
            if isinstance(event, Done):
                final = event.answer
        assert final is not None
        return final

    def stream(self, query: Query, *, use_model: bool = True) -> Iterator[Event]:
        """Yield the events of one question; InputError is raised before anything else."""
        started = time.perf_counter()
        text = clean_query(query.text, self.settings.general.max_query_chars)
        lang = query.lang if query.lang in prompt.LANG_NAMES else self.settings.general.lang
        answer = Answer(query=query.text, lang=lang, machine_id=query.machine_id)

        def mark(name: str) -> None:
            answer.timings_ms[name] = (time.perf_counter() - started) * 1000

        try:
            kb = self.kb()
        except ShifuError as error:
            yield Failed("kb", str(error))
            answer.notices.append(str(error))
            mark("total")
            yield Done(answer)
            return
        answer.kb_version = kb.version

        # 1-2: normalise and look the code up.
        machine_model = kb.machine_model(query.machine_id) if query.machine_id else ""
        found = kb.lookup(text, machine_model=machine_model, lang=lang) if code_key(text) else None
        if found is not None and found.entry is None and not looks_like_code(text):
            # A known code inside a sentence ("What does A02 mean?") still finds its procedure.
            embedded = kb.find_code_in_text(text)
            if embedded is not None:
                found = kb.lookup(embedded, machine_model=machine_model, lang=lang)
        is_code = found is not None and (found.entry is not None or looks_like_code(text))
        entry: CodeEntry | None = found.entry if (found and is_code) else None
        if found is not None and is_code:
            answer.normalized = found.key
            answer.code = entry
            answer.candidates = list(found.candidates)
            answer.suggestions = list(found.suggestions)
            if entry is not None and entry.lang != lang:
                answer.notices.append(
                    f"no {lang} text for this code; shown in {entry.lang}"
                    if lang == "en" else f"此代碼沒有中文資料，以 {entry.lang} 顯示"
                )
            if entry is None:
                answer.notices.append(
                    f"代碼 {text} 不在代碼表中" if lang == "zh-TW" else f"code {text} is not in the code table"
                )
        mark("lookup")
        yield CodeFound(answer.normalized, entry, tuple(answer.candidates), tuple(answer.suggestions), machine_model)

        # 3: repair history.
        if entry is not None:
            records, summary = kb.history(entry.key, query.machine_id)
            answer.history, answer.history_summary = records, summary
        mark("history")
        yield HistoryFound(tuple(answer.history), tuple(answer.history_summary))

        # 4: passages.
        try:
            if not self.settings.retrieval.enabled:
                raise _Skip
            extra = f"{entry.code} {entry.title} {entry.description}" if entry else ""
            # A bare code in any spelling ("a 09", "Ａ０９") searches as the table writes it, so
            # every spelling gets the same passages, and a cached answer's citations stay right.
            search_text = entry.code if entry is not None and code_key(text) == entry.key else normalize_text(text)
            result = kb.search(search_text, self.settings.retrieval.top_k, extra=extra)
            answer.passages = result.passages
            answer.notices.extend(result.notices)
        except _Skip:
            pass
        except ShifuError as error:
            yield Failed("retrieve", str(error))
            answer.notices.append(str(error))
        mark("retrieve")
        yield PassagesFound(tuple(answer.passages), tuple(answer.notices))

        # 5-6: cache, then the model. The audit row is written even when the caller stops
        # reading (a new scan cancels this answer), so feedback always has a row to refer to.
        finished = False
        try:
            if not use_model:
                answer.notices.append("模型已關閉 (--no-llm)" if lang == "zh-TW" else "model not used (--no-llm)")
            elif entry is None and not self._relevant(answer.passages):
                answer.generated = _not_in_kb(lang)
                answer.notices.append(
                    "知識庫中找不到相關資料" if lang == "zh-TW" else "nothing relevant in the knowledge base; not generated"
                )
            else:
                yield from self._generate(query, answer, entry, machine_model, mark)
            finished = True
        finally:
            if not finished:
                answer.notices.append("已取消" if lang == "zh-TW" else "cancelled")
            mark("total")
            self._audit(answer, query.source)
        yield Done(answer)

    def _relevant(self, passages: list[Passage]) -> bool:
        threshold = self.settings.retrieval.min_score
        if not passages:
            return False
        best = max(p.scores.get("similarity", 0.0) for p in passages)
        return best >= threshold if threshold > 0 else True

    def _cache_key(self, answer: Answer, machine_model: str, info: dict[str, Any]) -> str:
        ident = [
            answer.normalized or normalize_text(answer.query).casefold(),
            machine_model,
            answer.lang,
            answer.kb_version,
            info.get("backend"),
            info.get("base"),
            info.get("base_sha256"),
            info.get("adapter_sha256"),
            hashlib.sha256(prompt.SYSTEM_PROMPT.encode()).hexdigest()[:16],
            # The answer cites passage numbers: it is only valid over the same passages.
            [p.id for p in answer.passages],
            self.settings.retrieval.model_dump(mode="json"),
            self.settings.model.temperature,
        ]
        return hashlib.sha256(json.dumps(ident).encode()).hexdigest()

    def _generate(
        self, query: Query, answer: Answer, entry: CodeEntry | None, machine_model: str, mark: Callable[[str], None]
    ) -> Iterator[Event]:
        try:
            backend = self.backend()
            info = backend.info()
        except ShifuError as error:
            answer.notices.append(_model_notice(answer.lang, str(error)))
            yield Failed("model", str(error))
            return
        answer.model = info.to_json()
        cache_key = self._cache_key(answer, machine_model, answer.model)
        if self.opstore is not None and self.use_cache:
            cached = self.opstore.cache_get(cache_key)
            if cached is not None:
                answer.generated, answer.cached, answer.model_available = cached, True, True
                mark("cache")
                return
        ctx = self.prompt_context(answer, entry, machine_model)
        schema = prompt.answer_schema(len(ctx.passages))
        options = GenerateOptions(
            max_tokens=max(self.settings.model.max_tokens, prompt.grammar_token_bound(schema)),
            temperature=self.settings.model.temperature,
            repeat_penalty=self.settings.model.repeat_penalty,
            seed=self.settings.model.seed,
            json_schema=schema,
        )
        raw: list[str] = []
        background = query.priority > 0
        operator_waiting = threading.Event()

        def yield_to_operator() -> bool:
            if self.gate.waiting(max_priority=query.priority - 1):
                operator_waiting.set()
            return operator_waiting.is_set()

        if background:
            options = options.model_copy(update={"interrupt": yield_to_operator})
        try:
            while True:
                raw = []
                preempted = False
                operator_waiting.clear()
                with self.gate.hold(query.priority):
                    mark("model_start")
                    stream = backend.stream(prompt.messages(ctx), options)
                    try:
                        for piece in stream:
                            if not raw:
                                mark("first_token")
                            raw.append(piece)
                            if not background:
                                yield Token(piece)
                            elif yield_to_operator():
                                # An operator is waiting: give the model up now and redo this
                                # background answer afterwards (the prompt prefix stays cached).
                                break
                    finally:
                        close = getattr(stream, "close", None)
                        if close is not None:
                            close()
                    # Also set when the backend stopped evaluating the prompt for the operator.
                    preempted = operator_waiting.is_set()
                if not preempted:
                    break
                answer.diagnostics["preempted"] = int(answer.diagnostics.get("preempted", 0)) + 1
        except ShifuError as error:
            answer.notices.append(_model_notice(answer.lang, str(error)))
            yield Failed("generate", str(error))
            return
        mark("generated")
        trusted = "\n".join([*entry.steps, *entry.safety, *(r.action for r in answer.history)]) if entry else ""
        guarded = guard("".join(raw), answer.passages, answer.lang, trusted)
        answer.diagnostics.update(
            raw_schema_valid=guarded.schema_valid, cites_total=guarded.total_cites,
            cites_removed=guarded.removed_cites, contacts_removed=guarded.removed_contacts,
        )
        answer.generated = guarded.generated
        answer.notices.extend(guarded.notices)
        answer.model_available = True
        if guarded.complete and self.opstore is not None and self.use_cache:
            self.opstore.cache_put(cache_key, guarded.generated)

    def prompt_context(self, answer: Answer, entry: CodeEntry | None, machine_model: str) -> prompt.PromptContext:
        history = [
            f"{r.date} {r.machine_id}: {r.symptom} -> {r.action} ({r.result})" for r in answer.history[:2]
        ] + [f"fixed {f.count}x by: {f.action}" for f in answer.history_summary[:1]]
        shown = answer.passages[: self.settings.retrieval.prompt_passages]
        return prompt.PromptContext(
            query=answer.query,
            lang=answer.lang,
            machine=f"{answer.machine_id} ({machine_model})" if answer.machine_id else "",
            code=entry.code if entry else "",
            title=entry.title if entry else "",
            severity=entry.severity if entry else "",
            steps=entry.steps if entry else (),
            safety=entry.safety if entry else (),
            history=history,
            passages=[prompt.PromptPassage(p.n, p.source, p.section, p.text) for p in shown],
        )

    def _audit(self, answer: Answer, source: str) -> None:
        if self.opstore is None:
            return
        try:
            answer.audit_id = self.opstore.write_audit(answer.to_json(), source=source)
        except Exception as error:  # the answer still reaches the operator
            answer.notices.append(f"audit log write failed: {error}")


class _Skip(Exception):
    """Retrieval switched off in the configuration."""


def _model_notice(lang: str, message: str) -> str:
    if lang == "zh-TW":
        return f"模型無法回答，以下為標準作業程序：{message}"
    return f"the model could not answer; the standard procedure is shown: {message}"


def _not_in_kb(lang: str) -> dict[str, Any]:
    text = NOT_IN_KB.get(lang, NOT_IN_KB["en"])
    return {"summary": text, "steps": [], "safety": [], "parts": [], "escalate": True, "cites": [], "text": text}
