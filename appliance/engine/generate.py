"""Step 4: the model's explanation, guarded on every intermediate state, and cached.

`generate(...)` is a generator: it yields `Partial` events (and raw `Token`s only when asked
for debugging) and returns a `Generated` with the final guarded object. Every `Partial`
has passed the same guard as the final answer, so a screen never shows a raw token.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from appliance.config import Settings
from appliance.engine import guard as guard_module
from appliance.engine import quality
from appliance.engine.guard import Guarded, guard
from appliance.engine.schedule import Scheduler
from appliance.engine.types import Event, Partial, Token
from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo
from appliance.store.opstore import OpStore
from kb.types import Passage
from models import prompt, quote


@dataclass
class Generated:
    """What the model step produced for the answer."""

    generated: dict[str, Any] | None = None
    guarded: Guarded | None = None
    cached: bool = False
    lang: str = ""
    notices: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    preempted: int = 0


def generation_lang(lang: str, info: ModelInfo, settings: Settings) -> str | None:
    """The language the model answers in: the operator's, a fallback it writes, or None (omit)."""
    if lang in info.languages:
        return lang
    if settings.model.unsupported_lang == "omit" or not info.languages:
        return None
    return "en" if "en" in info.languages else info.languages[0]


def answer_mode(info: ModelInfo, settings: Settings) -> str:
    """`free` or `quote`: the configuration's `model.answer_mode`, or (auto) the base model's default."""
    configured = settings.model.answer_mode
    return configured if configured != "auto" else (info.answer_mode if info.answer_mode in prompt.ANSWER_MODES
                                                     else "free")


NO_QUOTES = {
    "zh-TW": "沒有可引用的原文句子；請依照標準作業程序處理。",
    "en": "nothing the model was shown can be quoted as a step; follow the standard procedure",
}


# A cached answer passed the guard and the gate of its day: when their rules change, it is stale.
RULES = hashlib.sha256(
    (inspect.getsource(guard_module) + inspect.getsource(quality)).encode("utf-8")
).hexdigest()[:16]


def cache_key(chat: list[dict[str, str]], shown: list[Passage], options: GenerateOptions, info: ModelInfo,
              kb_version: int | None) -> str:
    """Everything that went into the prompt, and what the answer's numbers refer to."""
    ident = [
        chat,  # system prompt, language, machine, query, procedure, history lines, passages
        [p.id for p in shown],
        options.model_dump(mode="json", exclude={"interrupt"}),
        [info.backend, info.base_id, info.base_sha256, info.adapter_sha256],
        kb_version,
        RULES,
    ]
    return hashlib.sha256(json.dumps(ident, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def answer_options(ctx: prompt.PromptContext, info: ModelInfo,
                   settings: Settings) -> tuple[GenerateOptions, tuple[quote.Quote, ...] | None]:
    """The generation options of an answer (schema, or quote mode's grammar) and, quoting, the
    sentences it may choose (empty: nothing to quote, do not generate)."""
    quotes: tuple[quote.Quote, ...] | None = None
    gbnf: str | None = None
    if ctx.mode == "quote":
        quotes = prompt.quotes(ctx)
        if not quotes:
            return GenerateOptions(), quotes
        # The summary is the one thing the model writes: only in a language it writes.
        summary = ctx.lang in info.languages
        schema = quote.schema(quotes, summary)
        gbnf = quote.grammar(quotes, summary)
        bound = quote.token_bound(quotes, summary)
    else:
        schema = prompt.answer_schema(len(ctx.passages))
        bound = prompt.grammar_token_bound(schema)
    options = GenerateOptions(
        max_tokens=max(settings.model.max_tokens, bound),
        temperature=settings.model.temperature,
        repeat_penalty=settings.model.repeat_penalty,
        seed=settings.model.seed,
        json_schema=schema,
        grammar=gbnf,
    )
    return options, quotes


def generate(
    backend: LLMBackend,
    scheduler: Scheduler,
    ctx: prompt.PromptContext,
    shown: list[Passage],
    trusted: str,
    settings: Settings,
    *,
    priority: int = 0,
    kb_version: int | None = None,
    opstore: OpStore | None = None,
    use_cache: bool = True,
    debug_tokens: bool = False,
    clock: Any = None,
) -> Iterator[Event | Generated]:
    """Yield Partial events, then one Generated (always last)."""
    import time

    now = clock or time.perf_counter
    out = Generated(lang=ctx.lang)
    chat = prompt.messages(ctx)
    info = backend.info()
    options, quotes = answer_options(ctx, info, settings)
    if quotes is not None and not quotes:
        out.notices.append(NO_QUOTES.get(ctx.lang, NO_QUOTES["en"]))
        yield out
        return
    key = cache_key(chat, shown, options, info, kb_version)
    if opstore is not None and use_cache:
        cached = opstore.cache_get(key)
        if cached is not None:
            out.generated, out.cached = cached, True
            yield out
            return
    run = scheduler.run(backend, chat, options, priority)
    raw: list[str] = []
    last: dict[str, Any] | None = None
    for piece in run:
        raw.append(piece)
        if debug_tokens:
            yield Token(piece)
        if priority > 0:
            continue  # background answers are not drawn while they are made
        partial = guard("".join(raw), shown, ctx.lang, trusted, final=False, quotes=quotes).generated
        if partial is not None and partial != last and (partial["steps"] or partial["summary"]):
            last = partial
            yield Partial(partial)
    if run.started_at is not None:
        out.timings["model_start"] = run.started_at
    if run.first_piece_at is not None:
        out.timings["first_token"] = run.first_piece_at
    out.timings["generated"] = now()
    out.preempted = run.preempted
    out.guarded = guard("".join(raw), shown, ctx.lang, trusted, final=True, quotes=quotes)
    out.generated = out.guarded.generated
    out.notices.extend(out.guarded.notices)
    if out.guarded.complete and out.generated is not None and opstore is not None and use_cache:
        opstore.cache_put(key, out.generated)
    yield out
