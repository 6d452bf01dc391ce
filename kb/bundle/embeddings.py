"""Precomputed chunk vectors carried in a bundle, so the appliance need not embed.

`embeddings/ids.txt` holds one chunk id per line and `embeddings/vectors.f32` the matching
float32 rows (little endian, `dim` values each); the manifest names the embedding model id.
Vectors are used only when that id equals the appliance's embedder's id.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kb.embed import Embedder
from kb.errors import BundleError

if TYPE_CHECKING:
    from kb.bundle.manifest import EmbeddingsInfo
    from kb.types import Chunk

IDS_PATH = "embeddings/ids.txt"
VECTORS_PATH = "embeddings/vectors.f32"


def write_embeddings(root: Path, ids: list[str], vectors: np.ndarray) -> None:
    (root / "embeddings").mkdir(parents=True, exist_ok=True)
    (root / IDS_PATH).write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    (root / VECTORS_PATH).write_bytes(np.ascontiguousarray(vectors, dtype="<f4").tobytes())


def read_embeddings(root: Path, info: EmbeddingsInfo) -> dict[str, np.ndarray]:
    """The bundle's vectors by chunk id; refuses anything inconsistent."""
    ids = (root / info.ids).read_text(encoding="utf-8").splitlines()
    if len(ids) != info.count or len(set(ids)) != len(ids):
        raise BundleError("embeddings: ids.txt does not hold `count` distinct chunk ids")
    flat = np.fromfile(root / info.vectors, dtype="<f4")
    if flat.size != info.count * info.dim:
        raise BundleError("embeddings: vectors.f32 does not hold count x dim values")
    matrix = flat.reshape(info.count, info.dim).astype(np.float32)
    if not np.isfinite(matrix).all():
        raise BundleError("embeddings: vectors.f32 holds NaN or infinite values")
    return {ident: matrix[n] for n, ident in enumerate(ids)}


def vectors_from_db(db_path: Path, model_id: str, ids: list[str]) -> dict[str, np.ndarray]:
    """Vectors already stored in a KB version's `embeddings` table (engineer side reuse)."""
    if not db_path.exists():
        return {}
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        wanted = set(ids)
        rows = conn.execute("SELECT chunk_id, dim, vector FROM embeddings WHERE model = ?", [model_id]).fetchall()
    finally:
        conn.close()
    return {r[0]: np.frombuffer(r[2], dtype=np.float32, count=r[1]).copy() for r in rows if r[0] in wanted}


def chunk_text(chunk: Chunk) -> str:
    """The text kb.build embeds for a chunk (section line, then body)."""
    return f"{chunk.section}\n{chunk.text}"


class PrecomputedEmbedder(Embedder):
    """Answers from the bundle's vectors; asks the real embedder only for texts it lacks."""

    def __init__(self, base: Embedder, by_text: dict[str, np.ndarray]) -> None:
        self.base = base
        self.model_id = base.model_id
        self.by_text = by_text
        first = next(iter(by_text.values()), None)
        self.dim = int(first.shape[0]) if first is not None else getattr(base, "dim", 0)
        self.hits = 0
        self.misses = 0

    def embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        missing = [t for t in texts if t not in self.by_text]
        computed: dict[str, np.ndarray] = {}
        if missing:
            rows = self.base.embed(missing, progress=progress)
            computed = dict(zip(missing, rows, strict=True))
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.by_text[t] if t in self.by_text else computed[t] for t in texts]).astype(np.float32)


def precomputed_embedder(base: Embedder, chunks: list[Chunk], vectors: dict[str, np.ndarray]) -> PrecomputedEmbedder:
    """Map the bundle's vectors (by chunk id) to the texts kb.build will ask for."""
    by_text = {chunk_text(c): vectors[c.id] for c in chunks if c.id in vectors}
    return PrecomputedEmbedder(base, by_text)
