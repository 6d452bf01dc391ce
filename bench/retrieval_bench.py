"""Retrieval benchmark: build throughput and query latency at 1k, 10k and 50k chunks.

    .venv/bin/python -m bench.retrieval_bench [--sizes 1000,10000,50000] [--queries 40] [--out FILE]

At the smallest size the KB is built the real way (Markdown manuals -> `kb.build.build`,
real sentence-transformers embeddings). The larger sizes use synthetic chunks (sentences
recombined from the sample manuals) with random unit vectors written straight into a KB
version's SQLite and Chroma through `kb.build`'s own writers, so they measure storage,
indexing and search, not the embedding model. Queries are always embedded by the real
model. Prints a table and writes JSON (default: bench/results/retrieval_bench.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "kb" / "sample"
QUERIES = [
    "belt slips on the drive pulley", "皮帶打滑", "A03", "E-203", "spindle overheat", "主軸過熱",
    "how much grease per pulley bearing", "液壓油多久換一次", "hydraulic oil temperature high",
    "安全門未關", "tool change arm stuck", "輸送帶跑偏", "emergency stop", "馬達過載", "servo alarm",
    "lockout tagout steps", "冷卻水流量不足", "inverter fault", "料管溫度過高", "way lube oil low",
]


def _sentences() -> list[str]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((SAMPLE / "manuals").glob("*.md")))
    parts = re.split(r"(?<=[.!?。！？])\s*|\n+", re.sub(r"[#|*`>-]+", " ", text))
    return [" ".join(p.split()) for p in parts if len(p.split()) > 3 or len(p.strip()) > 12]


def synthetic_chunks(n: int, seed: int = 7) -> list[tuple[str, str, str]]:
    """(source, section, text) triples: unique, manual-like, about 400 characters each."""
    rng = random.Random(seed)
    sentences = _sentences()
    chunks = []
    for i in range(n):
        body = " ".join(rng.choice(sentences) for _ in range(4))
        chunks.append((f"manual_{i % 50:02d}.md", f"Chapter {i // 200} > Section {i}", f"{body} (ref {i})"))
    return chunks


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}


def build_real(root: Path, n: int, embedder: Any) -> tuple[Path, dict[str, Any]]:
    """Write n sections as Markdown manuals and build them for real (embeddings included)."""
    from kb.build import SourceSpec, build
    from kb.versions import VersionStore

    source = root / "source"
    (source / "manuals").mkdir(parents=True)
    by_file: dict[str, list[str]] = {}
    for src, section, text in synthetic_chunks(n):
        by_file.setdefault(src, []).append(f"## {section.split(' > ')[-1]}\n\n{text}\n")
    for name, parts in by_file.items():
        (source / "manuals" / name).write_text("# Synthetic manual\n\n" + "\n".join(parts), encoding="utf-8")
    store = VersionStore(root / "kb")
    started = time.perf_counter()
    report = build([SourceSpec(source)], store, embedder)
    seconds = time.perf_counter() - started
    return store.current_path(), {"chunks": report.chunks, "build_s": round(seconds, 2),
                                  "chunks_per_s": round(report.chunks / seconds, 1), "vectors": "real"}


_EMBEDDED: dict[str, Any] = {}


def _embedded(embedder: Any, texts: list[str]) -> Any:
    """Embeddings of texts, kept between sizes (synthetic_chunks(n) is a prefix of synthetic_chunks(m > n))."""
    known = _EMBEDDED.get("texts", [])
    if len(known) >= len(texts) and known[: len(texts)] == texts:
        return _EMBEDDED["vectors"][: len(texts)]
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    _EMBEDDED.update(texts=texts, vectors=vectors)
    return vectors


def build_synthetic(root: Path, n: int, model_id: str, dim: int, embedder: Any = None,
                    pool: int = 3000) -> tuple[Path, dict[str, Any]]:
    """A KB version of n synthetic chunks via kb.build's writers. With `embedder`, real embeddings:
    the first `pool` chunks are embedded by the model; each further chunk is a paraphrase of one of
    them (its sentences in another order, another reference) whose vector is that chunk's embedding
    moved by noise to a cosine of about 0.95, about what the model gives such a reordering. Without
    an embedder, random unit vectors."""
    from kb.build import _Collected, _write_db, build_dense_index
    from kb.ingest.chunking import chunk_id, detect_lang
    from kb.store.migrate import connect
    from kb.types import Chunk
    from kb.versions import COMPLETE_MARK, DB_NAME, VersionStore

    store = VersionStore(root / "kb")
    store.versions_dir.mkdir(parents=True)
    version_dir = store.path(1)
    version_dir.mkdir()
    data = _Collected()
    texts = synthetic_chunks(min(n, pool) if embedder is not None else n)
    if embedder is not None:
        rng_text = random.Random(11)
        for i in range(len(texts), n):
            source, section, text = texts[i % pool]
            body = text.rsplit(" (ref ", 1)[0]
            parts = re.split(r"(?<=[.!?。！？])\s+", body)
            rng_text.shuffle(parts)
            texts.append((source, f"{section} variant {i // pool}", f"{' '.join(parts)} (ref {i})"))
    for ordinal, (source, section, text) in enumerate(texts):
        data.chunks.append(Chunk(id=chunk_id(source, section, text), source=source, section=section, text=text,
                                 page=None, lang=detect_lang(text), ordinal=ordinal))
    data.names.append("synthetic")
    rng = np.random.default_rng(7)
    embed_s = 0.0
    if embedder is not None:
        started = time.perf_counter()
        base = _embedded(embedder, [t for _, _, t in texts[:pool]])
        embed_s = time.perf_counter() - started
        vectors = base[np.arange(n) % len(base)].copy()
        noise = rng.standard_normal((n, dim)).astype(np.float32) * (0.33 / np.sqrt(dim))
        noise[: len(base)] = 0.0
        vectors += noise
    else:
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    db_path = version_dir / DB_NAME
    started = time.perf_counter()
    _write_db(db_path, data, 1, model_id)
    db = connect(db_path, synchronous="FULL")
    with db.conn:
        db.conn.executemany(
            "INSERT INTO embeddings (chunk_id, model, dim, vector) VALUES (?, ?, ?, ?)",
            [(c.id, model_id, dim, v.tobytes()) for c, v in zip(data.chunks, vectors, strict=True)],
        )
    db.conn.close()
    written_db = time.perf_counter() - started
    build_dense_index(db_path, version_dir / "chroma", model_id)
    seconds = time.perf_counter() - started
    (version_dir / COMPLETE_MARK).write_text(json.dumps({"version": 1}))
    store.activate(1)
    kind = f"real embeddings of {min(n, pool)} chunks, paraphrased" if embedder is not None else "random"
    return version_dir, {"chunks": n, "build_s": round(seconds, 2), "sqlite_s": round(written_db, 2),
                         "embed_s": round(embed_s, 1), "chunks_per_s": round(n / seconds, 1), "vectors": kind}


def measure_queries(version_dir: Path, embedder: Any, rounds: int) -> dict[str, dict[str, float]]:
    from kb.reader import KnowledgeBase

    kbase = KnowledgeBase(version_dir, embedder)
    try:
        kbase.search("warm up", 5)  # load the model and open the index before timing
        result: dict[str, dict[str, float]] = {}
        for mode in ("fts", "dense", "hybrid"):
            samples = []
            for i in range(rounds):
                query = QUERIES[i % len(QUERIES)]
                embedder.forget_queries()  # the query is embedded inside every timed search
                started = time.perf_counter()
                kbase.search(query, 5, mode=mode)
                samples.append((time.perf_counter() - started) * 1000)
            result[mode] = _percentiles(samples)
        return result
    finally:
        kbase.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000", help="comma-separated chunk counts")
    parser.add_argument("--real-up-to", type=int, default=1000, help="embed for real up to this many chunks")
    parser.add_argument("--queries", type=int, default=40, help="timed queries per mode and size")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retrieval_bench.json")
    args = parser.parse_args(argv)

    from kb.embed import SentenceTransformerEmbedder, offline

    offline()
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        with tempfile.TemporaryDirectory(prefix="shifu-bench-") as tmp:
            if size <= args.real_up_to:
                version_dir, build_info = build_real(Path(tmp), size, embedder)
            else:
                version_dir, build_info = build_synthetic(Path(tmp), size, embedder.model_id, embedder.dim)
            latency = measure_queries(version_dir, embedder, args.queries)
        rows.append({"size": size, **build_info, "latency": latency})
        print(f"done: {size} chunks", file=sys.stderr)

    print(f"{'chunks':>7} {'vectors':>10} {'build s':>8} {'chunks/s':>9}  "
          + "  ".join(f"{m + ' p50/p95 ms':>22}" for m in ("fts", "dense", "hybrid")))
    for row in rows:
        cells = "  ".join(f"{row['latency'][m]['p50_ms']:>10.1f} / {row['latency'][m]['p95_ms']:>8.1f}"
                          for m in ("fts", "dense", "hybrid"))
        kind = "real" if row["vectors"] == "real" else "synthetic"
        print(f"{row['chunks']:>7} {kind:>10} {row['build_s']:>8.1f} {row['chunks_per_s']:>9.1f}  {cells}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "embedding_model": embedder.model_id, "queries_per_mode": args.queries, "results": rows,
    }, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
