"""Fair comparisons (issue 19 item 2): engine versus raw llama-cpp-python, the operator under load,
prompt length per query class.

- Both sides warm: each gets one untimed warm-up query first, so both hold the system prefix in
  their KV cache and neither pays a first-call cost.
- Time to first token is measured from the moment the prompt is ready: on the engine side from its
  `PassagesFound` event (code lookup, history and retrieval done; what follows, prompt layout, cache
  check, scheduling and generation, is the wrapper's cost), on the raw side from the call with the
  tokens and the compiled grammar in hand. Retrieval (query to `PassagesFound`) is reported apart.
- The raw side reads exactly what the engine sent the model (bench.capture.Recorder): same tokens,
  same grammar (quote GBNF or JSON schema), same sampling settings.
- At least 20 samples per side, the order alternating; medians with interquartile ranges (`*_iqr`).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

DECODE_TOKENS = 48
RATIO_QUERIES = ["A03", "AL-1001", "E-203", "SP-101", "A07", "E-206", "ATC-03", "AL-1004", "A05", "E-210"]
RATIO_SAMPLES = 20
LOAD_SAMPLES = 10  # per side, operator idle and under alarm load
OPERATOR_QUERIES = ["A02", "E-204", "SP-102", "AL-1003", "A06", "E-208", "AL-1006", "AL-1005", "A10", "E-202"]
ALARM_QUERIES = ["A04", "A08", "E-205", "E-207", "AL-1002", "E-209"]


def iqr(samples: list[float]) -> float:
    """Interquartile range (inclusive quartiles); 0 for fewer than two samples."""
    if len(samples) < 2:
        return 0.0
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[2] - q[0]


def summarize(results: dict[str, Any], key: str, samples: list[float], digits: int = 1) -> None:
    results[key] = round(statistics.median(samples), digits)
    results[f"{key}_iqr"] = round(iqr(samples), digits)


def engine_run(bench: Any, text: str | Any, limit: int | None = None, priority: int = 0) -> dict[str, float]:
    """One engine answer (a query text or a Query): retrieval ms, TTFT ms from prompt-ready and from
    submitting, decode tok/s, tokens."""
    from appliance.engine import PassagesFound, Token

    query = bench.query(text, priority=priority) if isinstance(text, str) else text
    started = time.perf_counter()
    ready = first = last = 0.0
    count = 0
    stream = bench.engine.stream(query, debug_tokens=True)
    for event in stream:
        if isinstance(event, PassagesFound):
            ready = time.perf_counter()
        elif isinstance(event, Token):
            now = time.perf_counter()
            if count == 0:
                first = now
            last = now
            count += 1
            if limit is not None and count >= limit:
                break
    stream.close()
    return {
        "retrieval_ms": (ready - started) * 1000,
        "ttft_ms": (first - ready) * 1000 if first else float("nan"),
        "submit_ttft_ms": (first - started) * 1000 if first else float("nan"),
        "tok_s": (count - 1) / (last - first) if count > 1 and last > first else 0.0,
        "tokens": float(count),
    }


class RawSide:
    """Raw llama-cpp-python on the same GGUF, fed the engine's own prompt and grammar."""

    def __init__(self, bench: Any) -> None:
        from llama_cpp import Llama

        backend = bench.recorder.inner
        self.bench = bench
        self.llm = Llama(model_path=str(backend.base.path), n_ctx=backend.n_ctx, n_threads=backend.n_threads,
                         n_gpu_layers=backend.n_gpu_layers, seed=1234, verbose=False)
        self.prepared: dict[str, tuple[list[int], Any, Any]] = {}

    def prepare(self, text: str) -> int:
        """Capture what the engine sends for `text`; tokenize it and compile its grammar (untimed)."""
        from llama_cpp import LlamaGrammar

        from bench.capture import capture
        from models import prompt

        call = capture(self.bench.engine, self.bench.recorder, self.bench.query(text))
        assert call is not None, f"the engine would not ask the model for {text!r}"
        messages, options = call
        tokens = self.llm.tokenize(prompt.chatml(messages).encode("utf-8"), add_bos=False, special=True)
        if options.grammar:
            grammar = LlamaGrammar.from_string(options.grammar, verbose=False)
        else:
            grammar = LlamaGrammar.from_json_schema(json.dumps(options.json_schema), verbose=False)
        self.prepared[text] = (tokens, grammar, options)
        return len(tokens)

    def run(self, text: str, limit: int = DECODE_TOKENS) -> dict[str, float]:
        from models import prompt

        tokens, grammar, options = self.prepared[text]
        started = time.perf_counter()
        first = last = 0.0
        count = 0
        for piece in self.llm.create_completion(tokens, max_tokens=limit, temperature=options.temperature,
                                                repeat_penalty=options.repeat_penalty, seed=options.seed,
                                                grammar=grammar, stream=True, stop=options.stop or prompt.STOP):
            if piece["choices"][0].get("text"):
                now = time.perf_counter()
                if count == 0:
                    first = now
                last = now
                count += 1
        return {"ttft_ms": (first - started) * 1000 if first else float("nan"),
                "tok_s": (count - 1) / (last - first) if count > 1 and last > first else 0.0,
                "tokens": float(count)}

    def close(self) -> None:
        self.llm.close()


def engine_vs_raw(bench: Any) -> None:
    results = bench.results
    bench.engine.use_cache = False
    raw = RawSide(bench)
    try:
        for text in [*RATIO_QUERIES, "A09"]:
            raw.prepare(text)
        # One untimed warm-up each: both hold the system prefix and have run the grammar code once.
        engine_run(bench, "A09", limit=DECODE_TOKENS)
        raw.run("A09")
        engine: list[dict[str, float]] = []
        rawside: list[dict[str, float]] = []
        for i in range(RATIO_SAMPLES):
            text = RATIO_QUERIES[i % len(RATIO_QUERIES)]
            if i % 2 == 0:
                engine.append(engine_run(bench, text, limit=DECODE_TOKENS))
                rawside.append(raw.run(text))
            else:
                rawside.append(raw.run(text))
                engine.append(engine_run(bench, text, limit=DECODE_TOKENS))
            bench.log(f"{text}: engine ttft {engine[-1]['ttft_ms']:.0f} ms {engine[-1]['tok_s']:.1f} tok/s; "
                      f"raw ttft {rawside[-1]['ttft_ms']:.0f} ms {rawside[-1]['tok_s']:.1f} tok/s")
    finally:
        raw.close()
    e_ttft = [s["ttft_ms"] for s in engine]
    r_ttft = [s["ttft_ms"] for s in rawside]
    e_tps = [s["tok_s"] for s in engine]
    r_tps = [s["tok_s"] for s in rawside]
    results["ttft_samples"] = len(engine)
    summarize(results, "engine_ttft_ms", e_ttft)
    summarize(results, "raw_ttft_ms", r_ttft)
    summarize(results, "engine_retrieval_ms", [s["retrieval_ms"] for s in engine], 2)
    summarize(results, "engine_decode_tok_s", e_tps, 2)
    summarize(results, "raw_decode_tok_s", r_tps, 2)
    results["ttft_ratio_vs_raw"] = round(statistics.median(e_ttft) / statistics.median(r_ttft), 3)
    results["ttft_ratio_vs_raw_iqr"] = round(iqr([e / r for e, r in zip(e_ttft, r_ttft, strict=True)]), 3)
    results["decode_ratio_vs_raw"] = round(statistics.median(e_tps) / statistics.median(r_tps), 3)
    results["decode_ratio_vs_raw_iqr"] = round(iqr([e / r for e, r in zip(e_tps, r_tps, strict=True) if r]), 3)


def operator_under_load(bench: Any) -> None:
    """The operator's time to first token (from submitting) while three alarm answers keep the model
    busy, against idle; blocks of five alternate idle and loaded, LOAD_SAMPLES per side."""
    results = bench.results
    bench.engine.use_cache = False
    load_on = threading.Event()
    stop = threading.Event()
    busy = [0]
    lock = threading.Lock()

    def alarms(offset: int) -> None:
        i = offset
        while not stop.is_set():
            if not load_on.wait(0.1):
                continue
            with lock:
                busy[0] += 1
            try:
                bench.engine.answer(bench.query(ALARM_QUERIES[i % len(ALARM_QUERIES)], priority=1))
            finally:
                with lock:
                    busy[0] -= 1
            i += 1

    workers = [threading.Thread(target=alarms, args=(n,), daemon=True) for n in range(3)]
    for worker in workers:
        worker.start()
    idle: list[float] = []
    loaded: list[float] = []
    engine_run(bench, "A01", limit=1)  # warm-up
    try:
        i = 0
        while len(idle) < LOAD_SAMPLES or len(loaded) < LOAD_SAMPLES:
            under_load = (i // 5) % 2 == 1
            if under_load:
                load_on.set()
                time.sleep(1.5)  # let the alarm answers occupy the model
            else:
                load_on.clear()
                while busy[0]:  # idle means no background answer in flight
                    time.sleep(0.05)
            text = OPERATOR_QUERIES[i % len(OPERATOR_QUERIES)]
            ttft = engine_run(bench, text, limit=1)["submit_ttft_ms"]
            if ttft == ttft:  # NaN: no token (refused); not a sample
                (loaded if under_load else idle).append(ttft)
            i += 1
    finally:
        stop.set()
        load_on.set()
        for worker in workers:
            worker.join(timeout=600)
    results["operator_load_samples"] = min(len(idle), len(loaded))
    summarize(results, "operator_ttft_idle_ms", idle)
    summarize(results, "operator_ttft_under_alarm_load_ms", loaded)
    results["operator_ttft_under_alarm_load_ratio"] = round(statistics.median(loaded) / statistics.median(idle), 3)


CLASSES = {"known_code": "code", "code_variant": "variant", "symptom": "symptom", "unknown_code": "unknown"}


def query_classes(bench: Any, per_class: int) -> None:
    """Prompt tokens and time to first token (from prompt-ready, warm) per query class of the evalset;
    unknown codes are refused before the model, so they have no prompt."""
    from dataclasses import replace

    from bench.capture import capture
    from models import prompt

    rows = [json.loads(line) for line in bench.evalset.read_text(encoding="utf-8").splitlines() if line.strip()]
    llm = bench.recorder.inner.llama
    bench.engine.use_cache = False
    for label, kind in CLASSES.items():
        picked = [r for r in rows if r["kind"] == kind][:per_class]
        tokens: list[float] = []
        ttft: list[float] = []
        asked = 0
        for row in picked:
            query = replace(bench.query(row["query"], row.get("lang", "en")),
                            machine_id=row.get("machine") or bench.query(row["query"]).machine_id)
            call = capture(bench.engine, bench.recorder, query)
            if call is None:
                continue
            asked += 1
            tokens.append(len(llm.tokenize(prompt.chatml(call[0]).encode("utf-8"), add_bos=False, special=True)))
            ttft.append(engine_run(bench, query, limit=1)["ttft_ms"])
        bench.results[f"prompt_tokens_{label}"] = round(statistics.median(tokens)) if tokens else 0
        bench.results[f"ttft_ms_{label}"] = round(statistics.median(ttft), 1) if ttft else None
        bench.results[f"model_asked_{label}"] = f"{asked}/{len(picked)}"
        bench.log(f"{label}: prompt tokens {tokens}, ttft {[round(t) for t in ttft]}")
