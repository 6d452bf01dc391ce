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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "kb" / "sample"
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
        from appliance.llm.following import FollowingBackend
        from bench.capture import Recorder

        shared: Any = self.engine.backend()
        inner = shared._current if isinstance(shared, FollowingBackend) else shared
        # Every answer passes through the recorder, so the raw and prompt-lookup sides can replay
        # exactly what the engine sent the model (bench.capture).
        self.recorder = Recorder(inner)
        self.engine.set_backend(self.recorder)
        self.backend: Any = self.recorder
        self.evalset = REPO / "tests" / "data" / "evalset.jsonl"
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
        """Real MiniLM embeddings of manual-like chunks (bench.retrieval_bench.build_synthetic)."""
        from bench.retrieval_bench import build_synthetic, measure_queries

        embedder = self.engine.embedder
        assert embedder is not None
        pool = 1000 if self.quick else 2000
        self.results["retrieval_embedded_chunks"] = pool
        for size in (1000, 10000, 50000):
            root = self.tmp / f"r{size}"
            root.mkdir()
            version_dir, info = build_synthetic(root, size, embedder.model_id, embedder.dim, embedder, pool)
            latency = measure_queries(version_dir, embedder, 20 if self.quick else 40)
            label = f"{size // 1000}k"
            self.results[f"retrieval_p50_ms_{label}"] = latency["hybrid"]["p50_ms"]
            self.results[f"retrieval_p95_ms_{label}"] = latency["hybrid"]["p95_ms"]
            self.results[f"build_chunks_per_s_{label}"] = info["chunks_per_s"]
            shutil.rmtree(root, ignore_errors=True)
            self.log(f"retrieval {label}: {latency['hybrid']}")

    # -- 3/4. engine vs raw llama-cpp-python (bench.fair); prefix reuse ---------------------------
    def _engine_run(self, text: str, limit: int | None = None) -> tuple[float, float, int]:
        """(time to first token ms from submitting, decode tokens/s, tokens); stops after `limit` tokens."""
        from bench.fair import engine_run

        run = engine_run(self, text, limit)
        return run["submit_ttft_ms"], run["tok_s"], int(run["tokens"])

    def engine_vs_raw(self) -> None:
        from bench.fair import engine_vs_raw

        engine_vs_raw(self)

    def peer(self) -> None:
        """LlamaIndex on the same GGUF, embeddings and documents (bench/peer.py, the `bench` extra)."""
        try:
            from bench.peer import compare
        except ImportError as error:
            self.log(f"peer not measured: {error} (pip install -e '.[bench]')")
            return
        compare(self, 2)

    def query_classes(self) -> None:
        from bench.fair import query_classes

        query_classes(self, 3)

    def prefix_reuse(self) -> None:
        from models import prompt

        llm = self.backend.llama
        prefix_len = len(llm.tokenize(prompt.system_prefix().encode(), add_bos=False, special=True))
        self.engine.use_cache = False
        reevaluated = []
        warm, cold = [], []
        for text in ["A01", "E-206"] if self.quick else ["A01", "E-206", "SP-101"]:
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
        from bench.fair import operator_under_load

        operator_under_load(self)

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

    # -- 7. prompt-lookup decoding; the memory-bandwidth ceiling ----------------------------------
    def spec_decode(self) -> None:
        from bench.spec_steps import spec_decode

        spec_decode(self)

    def bandwidth(self) -> None:
        from bench.spec_steps import bandwidth

        bandwidth(self)

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
    "ttft_samples": (">=", 20),
    "operator_load_samples": (">=", 10),
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
    from bench.machine import facts

    bench = Bench(quick, gpu, log)
    bench.results.update(facts())
    bench.results["mode"] = ("gpu" if gpu else "cpu") + (" quick" if quick else "")
    started = time.perf_counter()
    try:
        bench.setup()
        # The headline comparisons first, so a run cut short still has them.
        for step in (bench.code_to_procedure, bench.cache, bench.engine_vs_raw, bench.peer, bench.spec_decode,
                     bench.bandwidth, bench.operator_under_load, bench.query_classes, bench.prefix_reuse,
                     bench.kiosk, bench.retrieval, bench.quote_mode):
            step_start = time.perf_counter()
            try:
                step()
            except Exception as error:  # one broken step must not lose the other figures of a long run
                import traceback

                traceback.print_exc()
                bench.results[f"{step.__name__}_error"] = f"{type(error).__name__}: {error}"
            log(f"{step.__name__}: {time.perf_counter() - step_start:.1f}s")
            bench.results["bench_seconds"] = round(time.perf_counter() - started, 1)
            _write(bench.results, out)  # a run stopped halfway still leaves the figures it has
    finally:
        bench.close()
    results = bench.results
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(f"{'measure':40} {'value':>12}  target")
    for key, value in results.items():
        target = TARGETS.get(key)
        verdict = ""
        if target and isinstance(value, int | float):
            ok = value <= target[1] if target[0] == "<=" else value >= target[1]
            verdict = f"{target[0]} {target[1]}  {'ok' if ok else 'MISSED'}"
        print(f"{key:40} {value!s:>12}  {verdict}")
    print(f"wrote {_write(results, out)}")
    return results


def _write(results: dict[str, Any], out: Path | None) -> Path:
    """Every run leaves its figures: the file asked for, else bench/results/last_run.json (not committed;
    the README's table comes from the committed bench/results/perf.json, see bench/readme_table.py)."""
    out = out or REPO / "bench" / "results" / "last_run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
