"""A bounded reader of a GGUF file's header: its metadata and its tensors' names and shapes.

It runs on the appliance, on files up to several GB, before llama.cpp parses them (GGUF parsers
have had memory-safety bugs) and without the training extra's `gguf` package. It reads from an
already open descriptor (the one whose sha256 was checked), never maps the tensor data, and
refuses counts and lengths no real model has instead of allocating for them. Long arrays (the
vocabulary, the merges) are skipped and only their length kept.

Layout (GGUF v2/v3, little endian): magic, version u32, tensor count u64, metadata count u64;
each metadata item: key string, type u32, value; strings are u64 length + UTF-8 bytes; arrays
are item type u32, count u64, items; then per tensor: name, n_dims u32, dims u64[n_dims]
(ne[0] first), type u32, data offset u64.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from kb.errors import ModelError

MAGIC = b"GGUF"
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 12
MAX_KEY = 1 << 16
MAX_STRING = 1 << 24
MAX_ARRAY = 1 << 24
MAX_DIMS = 8
MAX_HEADER = 512 << 20  # a 152k-token vocabulary with its merges is ~10 MB
KEEP_ARRAY = 64  # arrays up to this length keep their values (general.languages, ...)

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    """Scalars, strings and short arrays by key."""
    array_lengths: dict[str, int]
    """Every array's length, the long ones (tokens, merges) included."""
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Tensor name -> ne (ne[0] first, as llama.cpp counts)."""

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def file_type(self) -> str:
        return str(self.metadata.get("general.type", "model"))

    def arch_value(self, name: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{name}")

    @property
    def vocab_size(self) -> int | None:
        """Tokens in the vocabulary (the tokenizer's list, else the declared vocab_size)."""
        if "tokenizer.ggml.tokens" in self.array_lengths:
            return self.array_lengths["tokenizer.ggml.tokens"]
        value = self.arch_value("vocab_size")
        return int(value) if value is not None else None


class _Reader:
    def __init__(self, fd: int, what: str) -> None:
        self.fd, self.what = fd, what
        self.pos = 0
        self.buf = b""
        self.buf_at = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > MAX_HEADER:
            raise ModelError(f"{self.what}: the GGUF header is larger than {MAX_HEADER >> 20} MB; not a model file")
        end = self.pos + n
        if not (self.buf_at <= self.pos and end <= self.buf_at + len(self.buf)):
            self.buf_at = self.pos
            self.buf = os.pread(self.fd, max(n, 1 << 20), self.pos)
        start = self.pos - self.buf_at
        chunk = self.buf[start:start + n]
        if len(chunk) != n:
            raise ModelError(f"{self.what}: the GGUF header is truncated at byte {self.pos}")
        self.pos = end
        return chunk

    def unpack(self, fmt: str, size: int) -> Any:
        return struct.unpack(fmt, self.take(size))[0]

    def u32(self) -> int:
        return int(self.unpack("<I", 4))

    def u64(self) -> int:
        return int(self.unpack("<Q", 8))

    def string(self, limit: int = MAX_STRING) -> str:
        n = self.u64()
        if n > limit:
            raise ModelError(f"{self.what}: a GGUF string of {n} bytes at byte {self.pos} (limit {limit})")
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace")

    def skip_string(self) -> None:
        n = self.u64()
        if n > MAX_STRING:
            raise ModelError(f"{self.what}: a GGUF string of {n} bytes at byte {self.pos}")
        self.take(n)

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            fmt, size = _SCALARS[kind]
            return self.unpack(fmt, size)
        if kind == STRING:
            return self.string()
        raise ModelError(f"{self.what}: unknown GGUF value type {kind} at byte {self.pos}")


def read_header(fd: int, what: str = "model file") -> GGUFHeader:
    """Parse the header of the GGUF file open as `fd`; raise ModelError for anything malformed."""
    r = _Reader(fd, what)
    if r.take(4) != MAGIC:
        raise ModelError(f"{what} is not a GGUF file")
    version = r.u32()
    if version not in (2, 3):
        raise ModelError(f"{what}: GGUF version {version} is not supported (2 or 3)")
    n_tensors, n_kv = r.u64(), r.u64()
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelError(f"{what}: {n_tensors} tensors and {n_kv} metadata items is not a real model")
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = r.string(MAX_KEY)
        kind = r.u32()
        if kind != ARRAY:
            metadata[key] = r.value(kind)
            continue
        item, count = r.u32(), r.u64()
        if count > MAX_ARRAY:
            raise ModelError(f"{what}: array {key} claims {count} items")
        lengths[key] = count
        if item == STRING:
            if count <= KEEP_ARRAY:
                metadata[key] = [r.string() for _ in range(count)]
            else:
                for _ in range(count):
                    r.skip_string()
        elif item in _SCALARS:
            fmt, size = _SCALARS[item]
            raw = r.take(size * count)
            if count <= KEEP_ARRAY:
                metadata[key] = list(struct.unpack(f"<{count}{fmt[1]}", raw))
        else:
            raise ModelError(f"{what}: array {key} of GGUF type {item} is not supported")
    tensors: dict[str, tuple[int, ...]] = {}
    for _ in range(n_tensors):
        name = r.string(MAX_KEY)
        n_dims = r.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise ModelError(f"{what}: tensor {name} has {n_dims} dimensions")
        ne = tuple(r.u64() for _ in range(n_dims))
        r.u32()  # type
        r.u64()  # data offset
        tensors[name] = ne
    return GGUFHeader(version=version, metadata=metadata, array_lengths=lengths, tensors=tensors)


def read_header_file(path: os.PathLike[str] | str, what: str = "model file") -> GGUFHeader:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise ModelError(f"{what} {path} cannot be opened: {error}") from error
    try:
        return read_header(fd, f"{what} {path}")
    finally:
        os.close(fd)
