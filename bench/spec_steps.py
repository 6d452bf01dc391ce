"""Bench steps for decoding (issue 19 items 3 and 4): prompt lookup against plain decoding, and decode
speed as a fraction of this machine's memory-bandwidth ceiling."""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.fair import iqr, summarize

LOOKUP_TOKENS = 2  # proposed tokens per step measured here (model.prompt_lookup_tokens)
SPEC_MAX_TOKENS = 64  # per answer in the bench (tests/test_prompt_lookup.py compares whole answers)


def spec_decode(bench: Any) -> None:
    """Greedy answers of evalset code queries (the engine's prompts and grammars), plain and with prompt
    lookup, from the same KV state; identical output, tokens/s both ways, resident memory both ways."""
    from appliance.engine import Query
    from bench.capture import capture
    from bench.spec import compare
    from bench.spec_memory import measure

    results = bench.results
    rows = [json.loads(line) for line in bench.evalset.read_text(encoding="utf-8").splitlines() if line.strip()]
    codes = [r for r in rows if r["kind"] == "code"][:4]
    calls = []
    for row in codes:
        call = capture(bench.engine, bench.recorder, Query(text=row["query"], machine_id=row["machine"],
                                                           lang=row["lang"], source="bench"))
        if call is not None:
            calls.append(call)
    pairs = compare(bench.recorder.inner, calls, LOOKUP_TOKENS, max_tokens=SPEC_MAX_TOKENS)
    differing = [i for i, pair in enumerate(pairs) if not pair.identical]
    results["spec_decode_tokens"] = LOOKUP_TOKENS
    results["spec_decode_queries"] = len(pairs)
    results["spec_decode_identical"] = not differing
    results["spec_decode_divergence_rate"] = round(len(differing) / len(pairs), 3) if pairs else None
    results["spec_decode_first_difference"] = pairs[differing[0]].first_difference() if differing else None
    results["spec_decode_answer_tokens"] = round(statistics.median(len(p.plain) for p in pairs))
    plain = [p.plain_tok_s for p in pairs]
    lookup = [p.lookup_tok_s for p in pairs]
    summarize(results, "plain_decode_tok_s", plain, 2)
    summarize(results, "prompt_lookup_decode_tok_s", lookup, 2)
    results["spec_decode_speedup"] = round(statistics.median(lookup) / statistics.median(plain), 3)
    results["spec_decode_speedup_iqr"] = round(iqr([b / a for a, b in zip(plain, lookup, strict=True) if a]), 3)
    bench.log(f"prompt lookup: {len(differing)}/{len(pairs)} differ; {statistics.median(plain):.1f} -> "
              f"{statistics.median(lookup):.1f} tok/s")
    n_ctx = bench.recorder.inner.n_ctx
    for mode, key in (("plain", "rss_mb_plain"), ("bounded", "rss_mb_prompt_lookup"),
                      ("logits_all", "rss_mb_prompt_lookup_logits_all")):
        results[key] = measure(mode, LOOKUP_TOKENS, n_ctx)["VmHWM"]
    vocab = bench.recorder.inner.llama.n_vocab()
    results["logits_all_buffer_mb_at_n_ctx"] = round(n_ctx * vocab * 4 / 2**20)


def bandwidth(bench: Any) -> None:
    """Decode reads every weight once per token: ceiling = bandwidth / model file bytes."""
    from bench.machine import memory_bandwidth_gb_s

    results = bench.results
    gb_s = memory_bandwidth_gb_s()
    size = bench.recorder.inner.base.path.stat().st_size
    ceiling = gb_s * 1e9 / size
    results["memory_bandwidth_gb_s"] = gb_s
    results["model_file_mb"] = round(size / 2**20, 1)
    results["decode_ceiling_tok_s"] = round(ceiling, 1)
    decode = results.get("engine_decode_tok_s")
    results["decode_fraction_of_bandwidth_limit"] = round(decode / ceiling, 3) if decode else None
