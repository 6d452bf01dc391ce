"""The Chroma vector index of a KB version: a cache rebuilt from SQLite's embeddings.

Embeddings are always passed explicitly; Chroma's default embedding function (which
downloads a model) is never used. Writers take an exclusive file lock, so only one
process writes the index at a time.

Two places for the index, chosen by the application with `configure()`:
- embedded (default): a Chroma directory `chroma/` inside each KB version;
- server: a Chroma server (`chroma run --path DIR --host 127.0.0.1 --port 8000`) shared by
  every process on the PC. Each KB version is its own collection, named after the prefix,
  the version number and a fingerprint of the version's embeddings, so a version keeps its
  collection when its folder moves from staging to `versions/N`, and two different KBs
  never share one. A collection that is missing or incomplete on the server (a new
  version, a server whose data was wiped) is filled from the embeddings in SQLite, the
  record of truth, when it is first opened.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kb.embed import offline
from kb.errors import KBError
from kb.versions import DB_NAME

COLLECTION = "chunks"


@dataclass(frozen=True)
class ChromaServer:
    """Where a Chroma server listens (server mode)."""

    host: str = "127.0.0.1"
    port: int = 8000
    prefix: str = "shifu"
    timeout_s: float = 5.0


_server: ChromaServer | None = None
_clients: dict[ChromaServer, Any] = {}
_clients_lock = threading.Lock()


def configure(server: ChromaServer | None) -> None:
    """Use a Chroma server for every index opened from now on (None: embedded directories)."""
    global _server
    _server = server


def configured() -> ChromaServer | None:
    """The Chroma server in use, or None for embedded directories."""
    return _server


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


def _server_client(server: ChromaServer) -> Any:
    """One HTTP client per server, checked with a heartbeat that gives up after the timeout."""
    with _clients_lock:
        if server in _clients:
            return _clients[server]
    offline()
    import chromadb
    import httpx
    from chromadb.config import Settings as ChromaSettings

    base = f"http://{server.host}:{server.port}"
    try:
        httpx.get(f"{base}/api/v2/heartbeat", timeout=server.timeout_s).raise_for_status()
        client = chromadb.HttpClient(
            host=server.host, port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
        )
    except Exception as error:  # connection refused, timeout, not a Chroma server
        raise KBError(
            f"Chroma server {base} is not answering ({type(error).__name__}: {error}); "
            "start it (`chroma run --path DIR --host 127.0.0.1 --port N`) or set chroma.mode = \"embedded\""
        ) from error
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None:  # Chroma's own client never times out; a hung server must not hang a search
        session.timeout = httpx.Timeout(server.timeout_s * 6, connect=server.timeout_s)
    with _clients_lock:
        _clients[server] = client
    return client


def _forget_server_client(server: ChromaServer) -> None:
    with _clients_lock:
        _clients.pop(server, None)


def stored_vectors(version_dir: Path) -> tuple[str, list[str], Any]:
    """(embedding model id, chunk ids, vectors) that SQLite holds for this KB version."""
    db_path = version_dir / DB_NAME
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise KBError(f"knowledge base {db_path} is unreadable: {error}") from error
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()
        model = str(row[0]) if row and row[0] else ""
        rows = conn.execute(
            "SELECT chunk_id, dim, vector FROM embeddings WHERE model = ? ORDER BY chunk_id", [model]
        ).fetchall()
    except sqlite3.DatabaseError as error:
        raise KBError(f"knowledge base {db_path} is unreadable: {error}; rebuild it from the sources") from error
    finally:
        conn.close()
    ids = [r[0] for r in rows]
    vectors = np.stack([np.frombuffer(b, dtype=np.float32, count=d) for _, d, b in rows]) if rows else None
    return model, ids, vectors


def collection_name(index_dir: Path, prefix: str = "shifu") -> str:
    """The server collection of the KB version that owns `index_dir`: prefix, version, fingerprint."""
    version_dir = index_dir.parent
    db_path = version_dir / DB_NAME
    digest = hashlib.sha256()
    version = "0"
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            version = str(meta.get("version", "0"))
            model = str(meta.get("embedding_model", ""))
            digest.update(f"{version}\0{model}\0{meta.get('name', '')}\0".encode())
            for (chunk_id,) in conn.execute(
                "SELECT chunk_id FROM embeddings WHERE model = ? ORDER BY chunk_id", [model]
            ):
                digest.update(str(chunk_id).encode() + b"\0")
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise KBError(f"knowledge base {db_path} is unreadable: {error}; rebuild it from the sources") from error
    return f"{prefix}-v{version}-{digest.hexdigest()[:16]}"


def _missing(error: Exception) -> bool:
    return type(error).__name__ in {"NotFoundError", "InvalidCollectionException"} or "does not exist" in str(error)


class DenseIndex:
    """Nearest-neighbour search over chunk vectors in one Chroma directory or server collection."""

    def __init__(self, index_dir: Path, server: ChromaServer | None = None) -> None:
        self.index_dir = index_dir
        self.server = server if server is not None else _server
        self._collection: Any = None
        self._client: Any = None

    def open(self) -> Any:
        if self._collection is None and self.server is not None:
            self._collection = self._open_server(self.server)
        if self._collection is None:
            if not (self.index_dir / "chroma.sqlite3").exists():
                raise KBError(f"vector index {self.index_dir} is missing")
            try:
                client = _client(self.index_dir)
                self._client = client
                self._collection = client.get_collection(COLLECTION, embedding_function=None)
            except Exception as error:  # chromadb raises many kinds for a broken index
                raise KBError(f"vector index {self.index_dir} is unreadable: {error}") from error
        return self._collection

    def count(self) -> int:
        return int(self.open().count())

    def close(self) -> None:
        """Release the embedded Chroma client (its files stay open until the last user closes it)."""
        client, self._client, self._collection = self._client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:  # an older chromadb without close(): the files close at exit
                pass

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

    def _open_server(self, server: ChromaServer) -> Any:
        """The version's collection on the server, filled from SQLite first when missing or incomplete."""
        name = collection_name(self.index_dir, server.prefix)
        client = _server_client(server)
        try:
            try:
                collection = client.get_collection(name, embedding_function=None)
                complete = collection.count() == self._expected()
            except Exception as error:
                if not _missing(error):
                    raise
                collection, complete = None, False
            if not complete:
                _model, ids, vectors = stored_vectors(self.index_dir.parent)
                if vectors is None:
                    raise KBError(f"knowledge base {self.index_dir.parent} holds no embeddings to index")
                build_index(self.index_dir, ids, vectors, server=server)
                collection = client.get_collection(name, embedding_function=None)
            return collection
        except KBError:
            raise
        except Exception as error:
            _forget_server_client(server)  # reconnect next time (the server may have restarted)
            raise KBError(f"vector index {name} on the Chroma server is unusable: {error}") from error

    def _expected(self) -> int:
        db_path = self.index_dir.parent / DB_NAME
        try:
            conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()
                model = str(row[0]) if row and row[0] else ""
                return int(conn.execute("SELECT count(*) FROM embeddings WHERE model = ?", [model]).fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error as error:
            raise KBError(f"knowledge base {db_path} is unreadable: {error}") from error


def _build_on_server(server: ChromaServer, index_dir: Path, ids: list[str], vectors: np.ndarray, batch: int) -> None:
    """Fill a new collection under a temporary name, then swap it in by renaming."""
    name = collection_name(index_dir, server.prefix)
    client = _server_client(server)
    tmp = f"{name}-tmp"
    try:
        client.delete_collection(tmp)  # left over from an interrupted build
    except Exception:  # not there: nothing to clean up
        pass
    collection = client.create_collection(tmp, embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    for start in range(0, len(ids), batch):
        collection.add(
            ids=ids[start : start + batch], embeddings=vectors[start : start + batch].astype(np.float32).tolist()
        )
    try:
        client.delete_collection(name)
    except Exception:  # first build of this version
        pass
    collection.modify(name=name)


def build_index(
    index_dir: Path, ids: list[str], vectors: np.ndarray, batch: int = 2000, *, server: ChromaServer | None = None
) -> None:
    """Write a fresh index (replacing any existing one) from ids and vectors.

    In server mode the index is the version's collection on the server; `index_dir` only
    names the version (and its lock file).
    """
    server = server if server is not None else _server
    if server is not None:
        with write_lock(index_dir):
            try:
                _build_on_server(server, index_dir, ids, vectors, batch)
            except KBError:
                raise
            except Exception as error:
                _forget_server_client(server)
                raise KBError(f"cannot write the vector index to the Chroma server: {error}") from error
        return
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
