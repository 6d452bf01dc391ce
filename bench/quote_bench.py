"""Quote mode's cost (issue 20 item 3): grammar build time and decode speed against free mode.

    .venv/bin/python -m bench.quote_bench [--quick]      (also a step of `python -m bench`)

- `quote_grammar_build_p95_ms`: for the prompts of the evaluation set's queries (sample KB), a cold
  build: sentence split, GBNF text (its cache cleared first) and llama.cpp's own parse of it into a
  grammar sampler over the model's vocabulary (`llama_sampler_init_grammar`, what every completion
  does). Target < 50 ms.
- `quote_decode_ratio_vs_free`: decode tokens/s under the quote grammar divided by tokens/s under the
  free answer's JSON-schema grammar, same queries, same model, alternating which goes first (this
  machine is shared and noisy). Target >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EVALSET = REPO / "tests" / "data" / "evalset.jsonl"
DECODE_TOKENS = 64


def _grammar_build_ms(bench: Any, queries: list[Any]) -> list[float]:
    from llama_cpp import llama_cpp as lib

    from models import prompt, quote

    inner = getattr(bench.backend, "_current", None) or bench.backend  # under the registry-following wrapper
    model = inner.llama._model.model  # the loaded llama_model (the vocabulary the sampler checks)
    vocab = lib.llama_model_get_vocab(model)
    samples: list[float] = []
    for query in queries:
        ctx = bench.engine.context_for(query, "quote")
        quote.grammar.cache_clear()
        started = time.perf_counter()
        quotes = prompt.quotes(ctx)
        if not quotes:
            continue
        text = quote.grammar(quotes, True)
        sampler = lib.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
        samples.append((time.perf_counter() - started) * 1000)
        if not sampler:
            raise SystemExit(f"llama.cpp could not parse the quote grammar for {query.text!r}")
        lib.llama_sampler_free(sampler)
    return samples


def _decode(bench: Any, query: Any, mode: str) -> tuple[float, int]:
    """Decode tokens/s (first piece to last) of one answer in a mode, at most DECODE_TOKENS."""
    from appliance.engine.generate import answer_options

    backend = bench.backend
    ctx = bench.engine.context_for(query, mode)
    from models import prompt

    options, _quotes = answer_options(ctx, backend.info(), bench.settings)
    first = last = 0.0
    count = 0
    stream = backend.stream(prompt.messages(ctx), options)
    for _piece in stream:
        now = time.perf_counter()
        if count == 0:
            first = now
        last = now
        count += 1
        if count >= DECODE_TOKENS:
            break
    stream.close()
    return ((count - 1) / (last - first) if count > 1 and last > first else 0.0), count


def measure(bench: Any) -> None:
    """Add the quote-mode figures to `bench.results`."""
    items = [json.loads(line) for line in EVALSET.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [i for i in items if i.get("kind") in {"code", "symptom", "variant", "manual"}]
    queries = [bench.query(i["query"], i.get("lang", "en")) for i in items[: 24 if bench.quick else 60]]
    builds = _grammar_build_ms(bench, queries)
    bench.results["quote_grammar_build_p95_ms"] = round(_pct(builds, 95), 2)
    bench.results["quote_grammar_build_max_ms"] = round(max(builds), 2)
    bench.log(f"quote grammar builds: {len(builds)}, p50 {_pct(builds, 50):.2f} ms")
    decode_queries = queries[:: max(1, len(queries) // (3 if bench.quick else 6))]
    free, quoted = [], []
    for i, query in enumerate(decode_queries):
        order = ("free", "quote") if i % 2 == 0 else ("quote", "free")
        for mode in order:
            rate, count = _decode(bench, query, mode)
            (free if mode == "free" else quoted).append(rate)
            bench.log(f"{query.text} [{mode}]: {rate:.1f} tok/s over {count} tokens")
    bench.results["free_decode_tok_s"] = round(statistics.median(free), 2)
    bench.results["quote_decode_tok_s"] = round(statistics.median(quoted), 2)
    bench.results["quote_decode_ratio_vs_free"] = round(statistics.median(quoted) / statistics.median(free), 3)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    import sys

    from bench.perf import Bench
    from kb.embed import offline

    parser = argparse.ArgumentParser(prog="python -m bench.quote_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries")
    args = parser.parse_args()
    offline()
    bench = Bench(args.quick, False, lambda message: print(message, file=sys.stderr, flush=True))
    try:
        bench.setup()
        measure(bench)
    finally:
        bench.close()
    for key, value in bench.results.items():
        print(f"{key:40} {value!s:>12}")


if __name__ == "__main__":
    main()
