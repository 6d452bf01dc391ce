"""Copies of one text in the top sources: a vendor's table stored once per model, searched.

    .venv/bin/python -m bench.vendor_bench [--k 5] [--out FILE]

Builds the team's printer-maker table (tests/vendor_table.py: 96 vendor codes, 288 codes over
four models) with the real embedder, then asks every vendor text's first sentence as a symptom
and counts, in the top k, how many passages are distinct texts and whether the asked text is
among them — with the copies collapsed (kb.search.variants, what the engine does) and without
(each model's copy its own passage, as before), and the search time (query vectors cached by the
embedder, so the two runs time the same work). Prints a table and writes JSON (default:
bench/results/vendor_bench.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _body(text: str) -> str:
    first, _, rest = text.partition("\n")
    return f"{first.split(' ', 1)[-1]}\n{rest}"


def run(k: int, out: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from kb.build import SourceSpec, build
    from kb.embed import SentenceTransformerEmbedder, offline
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore
    from tests.vendor_table import records, write_source

    offline()
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    figures: dict[str, Any] = {"k": k}
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_source(Path(tmp) / "printers")
        store = VersionStore(Path(tmp) / "kb")
        started = time.monotonic()
        report = build([SourceSpec(Path(tmp) / "printers")], store, embedder)
        figures.update(codes=report.codes, chunks=report.chunks, yaml_records=len(records()[0]),
                       build_s=round(time.monotonic() - started, 2))
        kbase = KnowledgeBase(store.current_path(), embedder)
        try:
            texts = {r.text: r for r in rows}
            for text in texts:  # the query vectors are cached, so both runs time search alone
                kbase.search(text.split(". ", 1)[0], k)
            for label, collapsed in (("collapsed", True), ("copies", False)):
                kbase.searcher.variants = collapsed
                distinct, found, all_distinct, timings = [], 0, 0, []
                for text in texts:
                    query = text.split(". ", 1)[0]
                    began = time.perf_counter()
                    passages = kbase.search(query, k).passages
                    timings.append((time.perf_counter() - began) * 1000)
                    bodies = [_body(p.text) for p in passages]
                    distinct.append(len(set(bodies)))
                    all_distinct += len(set(bodies)) == len(bodies)
                    found += any(p.text.endswith(text) for p in passages)
                figures[label] = {
                    "queries": len(texts),
                    "mean_distinct_texts_in_top_k": round(statistics.mean(distinct), 2),
                    "queries_with_no_copy_in_top_k": round(all_distinct / len(texts), 3),
                    "asked_text_in_top_k": round(found / len(texts), 3),
                    "search_p50_ms": round(statistics.median(timings), 1),
                }
        finally:
            kbase.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"{figures['yaml_records']} YAML records -> {figures['codes']} codes, {figures['chunks']} chunks, "
          f"built with embeddings in {figures['build_s']} s")
    print(f"{'top ' + str(k):<12}{'distinct texts':>16}{'no copy':>10}{'asked found':>13}{'p50 ms':>9}")
    for label in ("collapsed", "copies"):
        f = figures[label]
        print(f"{label:<12}{f['mean_distinct_texts_in_top_k']:>16}{f['queries_with_no_copy_in_top_k']:>10}"
              f"{f['asked_text_in_top_k']:>13}{f['search_p50_ms']:>9}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vendor_bench", description=__doc__)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "vendor_bench.json")
    args = parser.parse_args()
    run(args.k, args.out)


if __name__ == "__main__":
    main()
