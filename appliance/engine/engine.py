"""Engine.stream(query): the data flow of one question, as typed events.

resolve -> CodeFound -> (for a symptom: LikelyCodes) -> history -> HistoryFound -> retrieve ->
PassagesFound -> (refused, waiting for the operator's choice, or the model through the scheduler)
-> Partial... -> Done. Each step is a function over typed inputs in its own module (resolve,
symptom, history, retrieve, generate, guard); the Engine holds the
resources (KB version, model, scheduler, operational store) and reads top to bottom. Steps
1-3 come from SQLite and the vector index in milliseconds, before the model is asked; if the
model is missing, slow or broken the operator still gets them, and a final Done always arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from appliance.config import Settings
from appliance.engine.generate import Generated, answer_mode, generate, generation_lang
from appliance.engine.history import History, find_history
from appliance.engine.resolve import Resolved, resolve
from appliance.engine.retrieve import retrieve
from appliance.engine.schedule import Scheduler
from appliance.engine.symptom import match_symptom
from appliance.engine.types import (
    Answer,
    CodeFound,
    Done,
    Event,
    Failed,
    HistoryFound,
    LikelyCodes,
    PassagesFound,
    Query,
)
from appliance.engine.validate import clean_query
from appliance.llm.base import LLMBackend
from appliance.llm.following import hold
from appliance.store.opstore import OpStore
from kb.embed import Embedder
from kb.errors import KBError, ModelError, ShifuError
from kb.reader import KnowledgeBase
from kb.repair import check_index, repair_in_background
from kb.search.rerank import CrossEncoderReranker, Tuning
from kb.symptoms import SymptomMatch
from kb.types import Passage
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
        self._checked: set[Path] = set()
        """KB versions whose vector index was checked (and rebuilt when broken)."""
        self.scheduler = Scheduler()
        self.gate = self.scheduler.gate
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
                self._kb = KnowledgeBase(
                    self.versions.path(current),
                    self.embedder if retrieval.dense else None,
                    rrf_k=retrieval.rrf_k,
                    tuning=Tuning(dense_cjk=retrieval.dense_cjk),
                    reranker=reranker,
                )
            return self._kb

    def keep_index(self, kb: KnowledgeBase) -> None:
        """Once per KB version: when its vector index is missing or broken, rebuild it from SQLite in
        the background (searches run on full text alone meanwhile, with a notice)."""
        if not self.settings.retrieval.dense:
            return
        with self._kb_lock:
            if kb.dir in self._checked:
                return
            self._checked.add(kb.dir)
        try:
            broken = check_index(kb.dir).problem is not None
        except KBError:
            broken = False  # the SQLite side is broken too: nothing to rebuild from
        if broken:
            repair_in_background(kb.dir)

    def set_backend(self, backend: LLMBackend) -> None:
        """Use an already loaded backend (shared between engines, e.g. by `shifu eval`)."""
        self._backend = backend

    def backend(self) -> LLMBackend:
        """The loaded model (loaded on first use; a failure is raised as ModelError). From `make_engine`
        it follows the registry's active pair (appliance.llm.following), as `kb()` follows `current`."""
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
            self.keep_index(kb)
            if self.embedder is not None and self.settings.retrieval.dense:
                kb.search("warm up", 1)
        except ShifuError as error:
            problems.append(str(error))
        try:
            self.backend()
        except ShifuError as error:
            problems.append(str(error))
        return "; ".join(problems) or None

    def close(self, *, backend: bool = True) -> None:
        """Release the KB version (and the model, unless `backend=False`: a model shared by engines)."""
        if backend and self._backend is not None:
            self._backend.close()
        if self._kb is not None:
            self._kb.close()
            self._kb = None

    # -- answering -------------------------------------------------------------------------
    def answer(self, query: Query, *, use_model: bool = True) -> Answer:
        """Run the stream to the end and return the answer."""
        final: Answer | None = None
        for event in self.stream(query, use_model=use_model):
            if isinstance(event, Done):
                final = event.answer
        assert final is not None
        return final

    def stream(self, query: Query, *, use_model: bool = True, debug_tokens: bool = False) -> Iterator[Event]:
        """Yield the events of one question; InputError is raised before anything else."""
        started = time.perf_counter()
        text = clean_query(query.text, self.settings.general.max_query_chars)
        lang = query.lang if query.lang in prompt.LANG_NAMES else self.settings.general.lang
        answer = Answer(query=query.text, lang=lang, machine_id=query.machine_id)

        def mark(name: str, at: float | None = None) -> None:
            answer.timings_ms[name] = ((at or time.perf_counter()) - started) * 1000

        try:
            kb = self.kb()
        except ShifuError as error:
            yield Failed("kb", str(error))
            answer.notices.append(str(error))
            mark("total")
            yield Done(answer)
            return
        self.keep_index(kb)
        answer.kb_version = kb.version

        resolved = resolve(kb, text, query.machine_id, lang, query.machine_model)
        answer.normalized, answer.code, answer.machine_model = resolved.normalized, resolved.entry, resolved.machine_model
        answer.candidates, answer.suggestions = list(resolved.candidates), list(resolved.suggestions)
        answer.codes_in_entry = list(resolved.codes_in_entry)
        answer.notices.extend(resolved.notices)
        mark("lookup")
        yield CodeFound(resolved.normalized, resolved.entry, resolved.candidates, resolved.suggestions,
                        resolved.machine_model, resolved.ambiguous, resolved.codes_in_entry)

        likely = match_symptom(kb, resolved, lang)
        answer.likely_codes, answer.similar_repairs = list(likely.codes), list(likely.repairs)
        mark("symptom")
        if likely.codes or likely.repairs:
            yield LikelyCodes(likely.codes, likely.repairs)

        history = find_history(kb, resolved.entry, query.machine_id)
        answer.history, answer.history_summary = list(history.records), list(history.summary)
        mark("history")
        yield HistoryFound(history.records, history.summary)

        retrieved = retrieve(kb, resolved, self.settings.retrieval)
        answer.passages = list(retrieved.passages)
        answer.notices.extend(retrieved.notices)
        if retrieved.failed:
            yield Failed("retrieve", retrieved.failed)
        mark("retrieve")
        yield PassagesFound(retrieved.passages, tuple(answer.notices))

        # The audit row is written even when the caller stops reading (a new scan cancels this
        # answer), so feedback always has a row to refer to.
        finished = False
        try:
            if not retrieved.relevant:
                answer.refused = True
                answer.notices.append(NOT_IN_KB.get(lang, NOT_IN_KB["en"]))
            elif resolved.waiting:
                pass  # the model explains the row the operator chooses, never a guessed one
            elif not use_model:
                answer.notices.append("模型已關閉 (--no-llm)" if lang == "zh-TW" else "model not used (--no-llm)")
            else:
                basis, known = explained_from(resolved, history, likely)
                yield from self._explain(query, answer, basis, known, mark, debug_tokens)
            finished = True
        finally:
            if not finished:
                answer.notices.append("已取消" if lang == "zh-TW" else "cancelled")
            mark("total")
            self._audit(answer, query.source)
        yield Done(answer)

    def _explain(self, query: Query, answer: Answer, resolved: Resolved, history: History,
                 mark: Callable[[str, float | None], None], debug_tokens: bool) -> Iterator[Event]:
        """Step 4: ask the model (through the scheduler) and keep its guarded answer."""
        try:
            shared = self.backend()
        except ShifuError as error:
            answer.notices.append(_model_notice(answer.lang, str(error)))
            yield Failed("model", str(error))
            return
        # One pair from start to end: a model switch (USB import, `shifu model activate`) waits
        # until this answer is done, and the audit row names the pair that wrote it.
        with hold(shared) as backend:
            yield from self._explain_with(backend, query, answer, resolved, history, mark, debug_tokens)

    def _explain_with(self, backend: LLMBackend, query: Query, answer: Answer, resolved: Resolved,
                      history: History, mark: Callable[[str, float | None], None],
                      debug_tokens: bool) -> Iterator[Event]:
        try:
            info = backend.info()
        except ShifuError as error:
            answer.notices.append(_model_notice(answer.lang, str(error)))
            yield Failed("model", str(error))
            return
        mode = answer_mode(info, self.settings)
        answer.model = {**info.to_json(), "answer_mode": mode}
        if info.verified is False:
            answer.notices.append(_unverified_notice(answer.lang))
        # Quoting, the model only chooses the plant's sentences: it answers in any language.
        gen_lang = answer.lang if mode == "quote" else generation_lang(answer.lang, info, self.settings)
        if gen_lang is None:
            answer.notices.append(_lang_notice(answer.lang, omitted=True))
            return
        if gen_lang != answer.lang:
            answer.notices.append(_lang_notice(answer.lang, omitted=False))
        ctx = self.prompt_context(resolved, history, answer.machine_id, gen_lang, answer.passages, mode)
        shown = answer.passages[: len(ctx.passages)]
        try:
            for item in generate(backend, self.scheduler, ctx, shown, trusted_text(resolved, history),
                                 self.settings, priority=query.priority, kb_version=answer.kb_version,
                                 opstore=self.opstore, use_cache=self.use_cache, debug_tokens=debug_tokens):
                if not isinstance(item, Generated):
                    yield item
                    continue
                for name, at in item.timings.items():
                    mark(name, at)
                answer.generated, answer.cached = item.generated, item.cached
                answer.notices.extend(item.notices)
                answer.model_available = True
                if item.preempted:
                    answer.diagnostics["preempted"] = item.preempted
                if item.guarded is not None:
                    g = item.guarded
                    answer.diagnostics.update(
                        raw_schema_valid=g.schema_valid, raw_cites=g.raw_cites, cites_total=g.total_cites,
                        cites_removed=g.removed_cites, contacts_removed=g.removed_contacts,
                        unsafe_removed=g.removed_unsafe, gate_dropped=g.dropped, gate_empty=g.generated is None,
                        not_quoted=g.not_quoted, answer_mode=mode,
                    )
        except ShifuError as error:
            answer.notices.append(_model_notice(answer.lang, str(error)))
            yield Failed("generate", str(error))

    def prompt_context(self, resolved: Resolved, history: History, machine_id: str, lang: str,
                       passages: list[Passage], mode: str = "free") -> prompt.PromptContext:
        """The prompt context for a resolved query: the one layout `shifu data build` uses too."""
        return prompt.build_context(
            query=resolved.prompt_query, lang=lang, machine_id=machine_id, machine_model=resolved.machine_model,
            entry=resolved.entry, records=history.records, fixes=history.summary, passages=passages,
            layout=self.layout(), answer_mode=mode, likely=resolved.likely,
        )

    def context_for(self, query: Query, mode: str = "free") -> prompt.PromptContext:
        """The prompt the model would read for a query (benchmarks, tests and data checks)."""
        kb = self.kb()
        text = clean_query(query.text, self.settings.general.max_query_chars)
        resolved = resolve(kb, text, query.machine_id, query.lang, query.machine_model)
        history = find_history(kb, resolved.entry, query.machine_id)
        retrieved = retrieve(kb, resolved, self.settings.retrieval)
        return self.prompt_context(resolved, history, query.machine_id, query.lang, list(retrieved.passages), mode)

    def layout(self) -> prompt.ContextLayout:
        return prompt.ContextLayout(records=2, fixes=1, passages=self.settings.retrieval.prompt_passages)

    def _audit(self, answer: Answer, source: str) -> None:
        if self.opstore is None:
            return
        try:
            answer.audit_id = self.opstore.write_audit(answer.to_json(), source=source,
                                                       gate_dropped=answer.diagnostics.get("gate_dropped"))
        except Exception as error:  # the answer still reaches the operator
            answer.notices.append(f"audit log write failed: {error}")


def explained_from(resolved: Resolved, history: History, likely: SymptomMatch) -> tuple[Resolved, History]:
    """What the model explains: the code's row and history, or for a symptom the likely code's row
    and the similar past repairs (the material the operator sees first), marked as likely."""
    if resolved.entry is not None or not likely.codes:
        return resolved, history
    records = history.records or tuple(r.record for r in likely.repairs)
    return replace(resolved, entry=likely.codes[0].entry, likely=True), History(records, history.summary)


def trusted_text(resolved: Resolved, history: History) -> str:
    """The plant's own words for this query: contacts found here may be shown."""
    entry = resolved.entry
    plant = [*entry.steps, *entry.safety] if entry is not None else []
    return "\n".join([*plant, *(r.action for r in history.records)])


def _lang_notice(lang: str, *, omitted: bool) -> str:
    if omitted:
        return ("此模型無法以中文撰寫說明，已省略 AI 說明；請依照標準作業程序處理。" if lang == "zh-TW"
                else "the model does not write this language; the explanation is left out")
    return ("此模型無法以中文撰寫說明，以下 AI 說明為英文。" if lang == "zh-TW"
            else f"the model does not write {lang}; the explanation is in English")


def _unverified_notice(lang: str) -> str:
    if lang == "zh-TW":
        return "注意：此模型檔案由設定檔指定，未經登錄雜湊驗證（請技術員以 shifu model verify 檢查）。"
    return ("unverified model: a file named in the configuration (model.path/model.adapter) was loaded without "
            "a registry hash to check it against")


def _model_notice(lang: str, message: str) -> str:
    if lang == "zh-TW":
        return f"模型無法回答，以下為標準作業程序：{message}"
    return f"the model could not answer; the standard procedure is shown: {message}"
