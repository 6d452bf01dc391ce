"""The Chroma vector index of a KB version: a cache rebuilt from SQLite's embeddings.

Embeddings are always passed explicitly; Chroma's default embedding function (which
downloads a model) is never used. Writers take an exclusive file lock, so only one
process writes the index at a time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kb.embed import offline
from kb.errors import KBError

COLLECTION = "chunks"


@contextmanager
def write_lock(index_dir: Path) -> Iterator[None]:
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(index_dir.parent / "chroma.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _client(index_dir: Path) -> Any:
    offline()
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(
        path=str(index_dir), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    )


class DenseIndex:
    """Nearest-neighbour search over chunk vectors in one Chroma directory."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self._collection: Any = None

    def open(self) -> Any:
        if self._collection is None:
            if not (self.index_dir / "chroma.sqlite3").exists():
                raise KBError(f"vector index {self.index_dir} is missing")
            try:
                client = _client(self.index_dir)
                self._collection = client.get_collection(COLLECTION, embedding_function=None)
            except Exception as error:  # chromadb raises many kinds for a broken index
                raise KBError(f"vector index {self.index_dir} is unreadable: {error}") from error
        return self._collection

    def count(self) -> int:
        return int(self.open().count())

    def query(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) best first."""
        try:
            result = self.open().query(
                query_embeddings=[vector.astype(np.float32).tolist()], n_results=k, include=["distances"]
            )
        except Exception as error:
            raise KBError(f"vector search failed: {error}") from error
        ids = result["ids"][0]
        distances = result["distances"][0] if result.get("distances") else [0.0] * len(ids)
        return [(ident, 1.0 - float(dist)) for ident, dist in zip(ids, distances, strict=True)]


def build_index(index_dir: Path, ids: list[str], vectors: np.ndarray, batch: int = 2000) -> None:
    """Write a fresh index (replacing any existing one) from ids and vectors."""
    with write_lock(index_dir):
        tmp = index_dir.with_name(index_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        client = _client(tmp)
        collection = client.create_collection(
            COLLECTION, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        for start in range(0, len(ids), batch):
            collection.add(
                ids=ids[start : start + batch],
                embeddings=vectors[start : start + batch].astype(np.float32).tolist(),
            )
        del collection, client
        if index_dir.exists():
            old = index_dir.with_name(index_dir.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(index_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, index_dir)
