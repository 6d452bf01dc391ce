"""`manifest.json`: what a bundle holds, parsed strictly.

Fields (format_version 1):

- `format_version` (int): 1.
- `kind`: `kb`, `model`, `kb+model` or `software`.
- `kb_version` (str): a label people read ("2025-06 line 3"); ordering comes from `sequence`.
- `model_version` (str): a label for the model payload, may be empty.
- `sequence` (int > 0): grows with every bundle a key signs; the appliance refuses a bundle
  whose sequence is not higher than the highest it imported from that key.
- `key_id` (str): id of the signing key (`sign.key_id`).
- `created` (str): ISO 8601 UTC time of signing, for people.
- `files`: every payload file as `{path, size, sha256}`; paths are relative POSIX paths.
- `kb`: `{sources: [{folder, mapping}]}` (folders and mapping files inside the bundle), or null.
- `embeddings`: `{model, dim, count, ids, vectors}` precomputed vectors keyed by chunk id, or null.
- `models`: registry entries `{id, kind, path, base_sha256, n_ctx, chat_template, quantization,
  architecture, activate}` for GGUF files in the bundle.
- `revoke`: key ids the appliance must stop trusting from now on.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kb.bundle.limits import Limits
from kb.errors import BundleError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
Kind = Literal["kb", "model", "kb+model", "software"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def check_path(path: str, limits: Limits) -> str:
    """Refuse a bundle path that could escape the bundle or confuse a file system."""
    if not path or len(path) > limits.max_path_chars:
        raise BundleError(f"bundle path {path[:60]!r} is empty or longer than {limits.max_path_chars} characters")
    try:
        path.encode("utf-8", errors="strict")
    except UnicodeEncodeError as error:
        raise BundleError(f"bundle path {path!r} is not valid UTF-8") from error
    if path.startswith("/") or "\\" in path or ":" in path.split("/")[0]:
        raise BundleError(f"bundle path {path!r} is absolute; only relative paths are allowed")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BundleError(f"bundle path {path!r} contains '..', '.' or an empty part; refused")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise BundleError(f"bundle path {path!r} contains control characters")
    if len(parts) > limits.max_depth:
        raise BundleError(f"bundle path {path!r} is nested deeper than {limits.max_depth} folders")
    if parts[0] in (MANIFEST, SIGNATURE):
        raise BundleError(f"bundle path {path!r} may not be listed in the manifest")
    return path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    path: str
    size: int = Field(ge=0)
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lower-case hex digits")
        return value


class SourceEntry(_Strict):
    folder: str
    mapping: str | None = None


class KBPayload(_Strict):
    sources: list[SourceEntry] = Field(min_length=1, max_length=32)


class EmbeddingsInfo(_Strict):
    model: str = Field(min_length=1, max_length=200)
    dim: int = Field(gt=0, le=8192)
    count: int = Field(ge=0)
    ids: str
    vectors: str


class ModelPayload(_Strict):
    id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._+-]+$")
    kind: Literal["base", "adapter"] = "base"
    path: str
    base_sha256: str = ""
    n_ctx: int = Field(default=2048, gt=0, le=1 << 20)
    chat_template: str = "chatml"
    quantization: str = ""
    architecture: str = ""
    activate: bool = False


class Manifest(_Strict):
    format_version: int
    kind: Kind
    kb_version: str = Field(default="", max_length=200)
    model_version: str = Field(default="", max_length=200)
    sequence: int = Field(gt=0, lt=1 << 62)
    key_id: str
    created: str = Field(max_length=64)
    files: list[FileEntry]
    kb: KBPayload | None = None
    embeddings: EmbeddingsInfo | None = None
    models: list[ModelPayload] = Field(default_factory=list, max_length=64)
    revoke: list[str] = Field(default_factory=list, max_length=256)
    note: str = Field(default="", max_length=2000)

    @field_validator("key_id")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY_ID.match(value):
            raise ValueError("must be 16 lower-case hex digits")
        return value

    @field_validator("revoke")
    @classmethod
    def _revoked(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _KEY_ID.match(value):
                raise ValueError(f"{value!r} is not a key id (16 lower-case hex digits)")
        return values

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)

    def to_bytes(self) -> bytes:
        """The canonical bytes that are signed."""
        data = self.model_dump(mode="json")
        return (json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_manifest(raw: bytes, limits: Limits) -> Manifest:
    """Parse and check the manifest bytes (already known to be signed by a trusted key)."""
    if len(raw) > limits.max_manifest_bytes:
        raise BundleError(f"manifest.json is {len(raw)} bytes, over the limit of {limits.max_manifest_bytes}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise BundleError(f"manifest.json is not valid UTF-8 JSON: {error}") from error
    if not isinstance(data, dict):
        raise BundleError("manifest.json must hold a JSON object")
    if data.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format_version {data.get('format_version')!r} is not supported (this appliance reads "
            f"{FORMAT_VERSION}); update the appliance software first"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
        raise BundleError(f"manifest.json is malformed: {problems}") from error
    _check_consistency(manifest, limits)
    return manifest


def _check_consistency(manifest: Manifest, limits: Limits) -> None:
    if len(manifest.files) > limits.max_files:
        raise BundleError(f"the bundle lists {len(manifest.files)} files, more than the limit of {limits.max_files}")
    seen: set[str] = set()
    total = 0
    for entry in manifest.files:
        check_path(entry.path, limits)
        folded = entry.path.casefold()
        if folded in seen:
            raise BundleError(f"the manifest lists {entry.path!r} twice")
        seen.add(folded)
        if entry.size > limits.max_file_bytes:
            raise BundleError(f"{entry.path} is {entry.size} bytes, over the per-file limit of {limits.max_file_bytes}")
        total += entry.size
    if total > limits.max_total_bytes:
        raise BundleError(f"the bundle holds {total} bytes, over the total limit of {limits.max_total_bytes}")
    wants_kb = manifest.kind in ("kb", "kb+model")
    wants_models = manifest.kind in ("model", "kb+model")
    if wants_kb != (manifest.kb is not None):
        raise BundleError(f"a '{manifest.kind}' bundle must {'' if wants_kb else 'not '}carry KB sources")
    if wants_models != bool(manifest.models):
        raise BundleError(f"a '{manifest.kind}' bundle must {'' if wants_models else 'not '}carry models")
    listed = {f.path for f in manifest.files}
    folders = {str(PurePosixPath(p).parent) for p in listed}
    for source in manifest.kb.sources if manifest.kb else []:
        check_path(source.folder, limits)
        if not any(p.startswith(source.folder + "/") for p in listed) and source.folder not in folders:
            raise BundleError(f"KB source folder {source.folder!r} holds no listed file")
        if source.mapping is not None and source.mapping not in listed:
            raise BundleError(f"mapping file {source.mapping!r} is not listed in the manifest")
    if manifest.embeddings is not None:
        for path in (manifest.embeddings.ids, manifest.embeddings.vectors):
            if path not in listed:
                raise BundleError(f"embeddings file {path!r} is not listed in the manifest")
        vectors = manifest.file(manifest.embeddings.vectors)
        assert vectors is not None
        if vectors.size != manifest.embeddings.count * manifest.embeddings.dim * 4:
            raise BundleError("embeddings: the vectors file size does not match count x dim float32 values")
    for model in manifest.models:
        if model.path not in listed:
            raise BundleError(f"model file {model.path!r} is not listed in the manifest")
