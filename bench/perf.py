"""Shifu's fast paths, measured side by side with their baselines in one run.

    .venv/bin/python -m bench [--quick] [--json FILE] [--gpu]

Everything is real: the sample KB built with real embeddings, the embedded SmolLM2 GGUF through
llama-cpp-python (the same file for the engine and for raw llama-cpp-python), real Chroma and
SQLite. Ratios are measured in one run, alternating the two sides, because this machine is noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "kb" / "sample"
DECODE_TOKENS = 48  # tokens decoded per engine-vs-raw comparison
CODES = ["A01", "A03", "E-203", "e 203", "AL-1001", "SP-101", "E-001", "A07", "ATC-03", "E-206", "P-01", "a05"]
MACHINES = {"A": "CV-01", "E": "IM-01", "S": "MC-01", "P": "CV-02"}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def machine_for(code: str) -> str:
    if code.upper().startswith(("AL", "SP", "ATC")):
        return "MC-01"
    return MACHINES.get(code.strip()[0].upper(), "CV-01")


class Bench:
    def __init__(self, quick: bool, gpu: bool, log: Callable[[str], None]) -> None:
        self.quick = quick
        self.gpu = gpu
        self.log = log
        self.results: dict[str, Any] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="shifu-perf-"))
        os.environ["SHIFU_HOME"] = str(self.tmp / "home")
        if gpu:
            os.environ["SHIFU_MODEL__N_GPU_LAYERS"] = "-1"
            os.environ["SHIFU_MODEL__FLASH_ATTN"] = "true"

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        from appliance.config import load_settings
        from appliance.engine.factory import make_engine
        from kb.build import SourceSpec, build

        started = time.perf_counter()
        self.settings = load_settings()
        self.engine = make_engine(self.settings)
        assert self.engine.embedder is not None
        build([SourceSpec(SAMPLE)], self.engine.versions, self.engine.embedder)
        self.results["setup_kb_build_s"] = round(time.perf_counter() - started, 1)
        problem = self.engine.warm()
        if problem:
            raise SystemExit(f"engine not ready: {problem}")
        self.backend: Any = self.engine.backend()
        self.log(f"setup done in {time.perf_counter() - started:.1f}s")

    def query(self, text: str, lang: str = "en", priority: int = 0) -> Any:
        from appliance.engine import Query

        return Query(text=text, machine_id=machine_for(text), lang=lang, source="bench", priority=priority)

    # -- 1. code to standard procedure --------------------------------------------------------
    def code_to_procedure(self) -> None:
        from appliance.engine import CodeFound

        samples = []
        rounds = 40 if self.quick else 200
        for i in range(rounds):
            code = CODES[i % len(CODES)]
            started = time.perf_counter()
            stream = self.engine.stream(self.query(code, "zh-TW" if i % 2 else "en"))
            for event in stream:
                if isinstance(event, CodeFound):
                    assert event.entry is not None, code
                    samples.append((time.perf_counter() - started) * 1000)
                    break
            stream.close()
        self.results["code_to_procedure_p50_ms"] = round(pct(samples, 50), 2)
        self.results["code_to_procedure_p95_ms"] = round(pct(samples, 95), 2)

    # -- 2. retrieval at 1k / 10k / 50k ----------------------------------------------------------
    def retrieval(self) -> None:
        from bench.retrieval_bench import build_synthetic, measure_queries

        embedder = self.engine.embedder
        assert embedder is not None
        for size in (1000, 10000, 50000):
            root = self.tmp / f"r{size}"
            root.mkdir()
            version_dir, info = build_synthetic(root, size, embedder.model_id, embedder.dim)
            latency = measure_queries(version_dir, embedder, 20 if self.quick else 60)
            label = f"{size // 1000}k"
            self.results[f"retrieval_p50_ms_{label}"] = latency["hybrid"]["p50_ms"]
            self.results[f"retrieval_p95_ms_{label}"] = latency["hybrid"]["p95_ms"]
            self.results[f"build_chunks_per_s_{label}"] = info["chunks_per_s"]
            shutil.rmtree(root, ignore_errors=True)
            self.log(f"retrieval {label}: {latency['hybrid']}")

    # -- 3/4. engine vs raw llama-cpp-python; prefix reuse --------------------------------------
    def _engine_run(self, text: str, limit: int | None = None) -> tuple[float, float, int]:
        """(time to first token ms, decode tokens/s, tokens); stops after `limit` tokens."""
        from appliance.engine import Token

        started = time.perf_counter()
        first = last = 0.0
        count = 0
        stream = self.engine.stream(self.query(text), debug_tokens=True)
        for event in stream:
            if isinstance(event, Token):
                now = time.perf_counter()
                if count == 0:
                    first = now
                last = now
                count += 1
                if limit is not None and count >= limit:
                    break
        stream.close()
        return (first - started) * 1000, (count - 1) / (last - first) if count > 1 and last > first else 0.0, count

    def _raw_run(self, llm: Any, tokens: list[int], grammar: Any, max_tokens: int) -> tuple[float, float, int]:
        started = time.perf_counter()
        first = last = 0.0
        count = 0
        # The engine's sampling settings, so both sides decode the same tokens.
        for piece in llm.create_completion(tokens, max_tokens=max_tokens, temperature=self.settings.model.temperature,
                                           repeat_penalty=self.settings.model.repeat_penalty, seed=self.settings.model.seed,
                                           grammar=grammar, stream=True, stop=["<|im_end|>"]):
            if piece["choices"][0].get("text"):
                now = time.perf_counter()
                if count == 0:
                    first = now
                last = now
                count += 1
        return (first - started) * 1000, (count - 1) / (last - first) if count > 1 and last > first else 0.0, count

    def engine_vs_raw(self) -> None:
        from llama_cpp import Llama, LlamaGrammar

        from models import prompt

        self.engine.use_cache = False
        base = self.backend.base
        raw = Llama(model_path=str(base.path), n_ctx=self.backend.n_ctx, n_threads=self.backend.n_threads,
                    n_gpu_layers=self.backend.n_gpu_layers, seed=1234, verbose=False)
        queries = ["A03", "AL-1001", "E-203", "SP-101"]
        if not self.quick:
            queries += ["A07", "E-206", "ATC-03", "AL-1004"]
        engine_ttft, engine_tps, raw_ttft, raw_tps = [], [], [], []
        for i, text in enumerate(queries):
            # The prompt the engine builds for this query, fed to raw llama-cpp-python as tokens.
            ctx = self.engine.context_for(self.query(text))
            tokens = raw.tokenize(prompt.chatml(prompt.messages(ctx)).encode(), add_bos=False, special=True)
            schema = prompt.answer_schema(len(ctx.passages))
            grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            # Same state on both sides: the system prefix is cached from the previous query.
            # Who goes first alternates, so a slow spell of this noisy machine hits both sides.
            if i % 2 == 0:
                t, s, n = self._engine_run(text, limit=DECODE_TOKENS)
                engine_ttft.append(t)
                engine_tps.append(s)
                t, s, _ = self._raw_run(raw, tokens, grammar, n)
                raw_ttft.append(t)
                raw_tps.append(s)
            else:
                t, s, _ = self._raw_run(raw, tokens, grammar, DECODE_TOKENS)
                raw_ttft.append(t)
                raw_tps.append(s)
                t, s, _ = self._engine_run(text, limit=DECODE_TOKENS)
                engine_ttft.append(t)
                engine_tps.append(s)
            self.log(f"{text}: engine ttft {engine_ttft[-1]:.0f} ms {engine_tps[-1]:.1f} tok/s; "
                     f"raw ttft {raw_ttft[-1]:.0f} ms {raw_tps[-1]:.1f} tok/s")
        raw.close()
        self.results["engine_ttft_ms"] = round(statistics.median(engine_ttft), 1)
        self.results["raw_ttft_ms"] = round(statistics.median(raw_ttft), 1)
        self.results["engine_decode_tok_s"] = round(statistics.median(engine_tps), 2)
        self.results["raw_decode_tok_s"] = round(statistics.median(raw_tps), 2)
        self.results["decode_ratio_vs_raw"] = round(statistics.median(engine_tps) / statistics.median(raw_tps), 3)
        self.results["ttft_ratio_vs_raw"] = round(statistics.median(engine_ttft) / statistics.median(raw_ttft), 3)

    def prefix_reuse(self) -> None:
        from models import prompt

        llm = self.backend.llama
        prefix_len = len(llm.tokenize(prompt.system_prefix().encode(), add_bos=False, special=True))
        self.engine.use_cache = False
        reevaluated = []
        warm, cold = [], []
        for text in ["A01", "E-206"] if self.quick else ["A01", "E-206", "SP-101", "A05", "E-210"]:
            llm.reset()  # cold: nothing cached
            cold.append(self._engine_run(text, limit=1)[0])
            self._engine_run("ATC-03", limit=1)  # another query leaves only the shared prefix useful
            warm.append(self._engine_run(text + " ", limit=1)[0])
            stats = self.backend.last_stats()
            reevaluated.append(max(0, stats.evaluated_prompt_tokens - (stats.prompt_tokens - prefix_len)))
        self.results["prefix_tokens"] = prefix_len
        self.results["prefix_reevaluated_tokens"] = max(reevaluated)
        self.results["warm_ttft_ms"] = round(statistics.median(warm), 1)
        self.results["cold_ttft_ms"] = round(statistics.median(cold), 1)
        self.results["warm_prefix_ttft_ratio"] = round(statistics.median(warm) / statistics.median(cold), 3)

    # -- 5. answer cache ---------------------------------------------------------------------
    def cache(self) -> None:
        self.engine.use_cache = True
        first = self.engine.answer(self.query("A09"))
        self.results["cache_miss_s"] = round(first.timings_ms.get("total", 0.0) / 1000, 2)
        samples = []
        for i in range(30):
            started = time.perf_counter()
            answer = self.engine.answer(self.query("A09" if i % 2 else "a 09"))
            samples.append((time.perf_counter() - started) * 1000)
            assert answer.cached
        self.results["cache_hit_p50_ms"] = round(pct(samples, 50), 2)
        self.results["cache_hit_p95_ms"] = round(pct(samples, 95), 2)

    # -- 6. operator first; kiosk start and memory ----------------------------------------------
    def operator_under_load(self) -> None:
        self.engine.use_cache = False
        idle = [self._engine_run(t, limit=1)[0] for t in ("A02", "E-204")]
        stop = threading.Event()

        def alarms() -> None:
            codes = ["A04", "A06", "A08", "E-205", "E-207", "AL-1002"]
            i = 0
            while not stop.is_set():
                self.engine.answer(self.query(codes[i % len(codes)], priority=1))
                i += 1

        workers = [threading.Thread(target=alarms, daemon=True) for _ in range(3)]
        for worker in workers:
            worker.start()
        time.sleep(2.0)  # let the alarm answers occupy the model
        loaded = [self._engine_run(t, limit=1)[0] for t in ("A02", "E-204")]
        stop.set()
        for worker in workers:
            worker.join(timeout=600)
        self.results["operator_ttft_idle_ms"] = round(statistics.median(idle), 1)
        self.results["operator_ttft_under_alarm_load_ms"] = round(statistics.median(loaded), 1)
        self.results["operator_ttft_under_alarm_load_ratio"] = round(statistics.median(loaded) / statistics.median(idle), 3)

    def kiosk(self) -> None:
        if shutil.which("tmux") is None:
            self.log("tmux missing: kiosk start not measured")
            return
        shifu = Path(sys.executable).parent / "shifu"
        socket = f"shifu-bench-{os.getpid()}"
        env = {**os.environ, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
        started = time.perf_counter()
        subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-x", "120", "-y", "40",
                        f"{shifu} kiosk --no-kiosk"], env=env, check=True)
        ready = None
        try:
            while time.perf_counter() - started < 300:
                screen = subprocess.run(["tmux", "-L", socket, "capture-pane", "-p"], capture_output=True,
                                        text=True).stdout
                if self.backend.base.id in screen:
                    ready = time.perf_counter() - started
                    break
                time.sleep(0.1)
            pid = subprocess.run(["tmux", "-L", socket, "list-panes", "-F", "#{pane_pid}"], capture_output=True,
                                 text=True).stdout.strip()
            rss = 0
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) // 1024
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
        self.results["kiosk_ready_s"] = round(ready, 2) if ready is not None else None
        self.results["kiosk_rss_mb"] = rss

    # -- 7. naive RAG baseline ------------------------------------------------------------------
    def naive_rag(self) -> None:
        """Always the model, no code table, no caches, context stuffed with the top passages."""
        from appliance.engine import CodeFound, Done

        llm = self.backend.llama
        kb = self.engine.kb()
        naive_full, shifu_proc, shifu_full = [], [], []
        self.engine.use_cache = False
        for text in ["A03", "SP-101"] if self.quick else ["A03", "E-203", "SP-101", "A07", "E-206", "AL-1004"]:
            started = time.perf_counter()
            passages = kb.search(text, 8).passages
            context = "\n\n".join(f"{p.section}\n{p.text}" for p in passages)
            naive_prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                            f"Context:\n{context}\n\nQuestion: How do I fix error {text}? List the steps."
                            "<|im_end|>\n<|im_start|>assistant\n")
            llm.reset()
            llm.create_completion(naive_prompt, max_tokens=256, temperature=0.0, stop=["<|im_end|>"])
            naive_full.append(time.perf_counter() - started)
            started = time.perf_counter()
            for event in self.engine.stream(self.query(text)):
                if isinstance(event, CodeFound):
                    shifu_proc.append(time.perf_counter() - started)
                if isinstance(event, Done):
                    shifu_full.append(time.perf_counter() - started)
        self.results["naive_rag_full_s"] = round(statistics.median(naive_full), 3)
        self.results["shifu_procedure_s"] = round(statistics.median(shifu_proc), 4)
        self.results["shifu_full_s"] = round(statistics.median(shifu_full), 3)
        self.results["naive_rag_speedup_to_procedure"] = round(statistics.median(naive_full) / statistics.median(shifu_proc), 1)
        self.results["naive_rag_speedup_to_answer"] = round(statistics.median(naive_full) / statistics.median(shifu_full), 3)

    def quote_mode(self) -> None:
        from bench.quote_bench import measure

        measure(self)

    def close(self) -> None:
        self.engine.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TARGETS = {
    "code_to_procedure_p95_ms": ("<=", 50),
    "retrieval_p95_ms_50k": ("<=", 60),
    "decode_ratio_vs_raw": (">=", 0.95),
    "ttft_ratio_vs_raw": ("<=", 1.1),
    "prefix_reevaluated_tokens": ("<=", 0),
    "cache_hit_p95_ms": ("<=", 20),
    "quote_grammar_build_p95_ms": ("<=", 50),
    "quote_decode_ratio_vs_free": (">=", 0.9),
}


def run(quick: bool, gpu: bool, out: Path | None) -> dict[str, Any]:
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if gpu:
        from llama_cpp import llama_cpp as lib

        if not lib.llama_supports_gpu_offload():
            raise SystemExit("--gpu: this llama-cpp-python build has no GPU offload (install the CUDA build)")
    bench = Bench(quick, gpu, log)
    started = time.perf_counter()
    try:
        bench.setup()
        for step in (bench.code_to_procedure, bench.cache, bench.prefix_reuse, bench.engine_vs_raw,
                     bench.operator_under_load, bench.naive_rag, bench.kiosk, bench.retrieval, bench.quote_mode):
            step_start = time.perf_counter()
            step()
            log(f"{step.__name__}: {time.perf_counter() - step_start:.1f}s")
    finally:
        bench.close()
    results = bench.results
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    results["mode"] = ("gpu" if gpu else "cpu") + (" quick" if quick else "")
    print(f"{'measure':40} {'value':>12}  target")
    for key, value in results.items():
        target = TARGETS.get(key)
        verdict = ""
        if target and isinstance(value, int | float):
            ok = value <= target[1] if target[0] == "<=" else value >= target[1]
            verdict = f"{target[0]} {target[1]}  {'ok' if ok else 'MISSED'}"
        print(f"{key:40} {value!s:>12}  {verdict}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"wrote {out}")
    return results
