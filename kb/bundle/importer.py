"""Import a bundle on the appliance: stage, verify, refuse replays, build, self-test, switch.

Phases (each may be cut by a power failure; the next start calls `recover`):

1. `copied`     the stick's folder is copied into `<staging>/import-<pid>/` (checked on the way)
2. `verified`   signature and every hash checked on the staged copy; sequence above the last one
3. `revoked`    revocations the bundle carries are saved
4. `built`      a new KB version is built from the staged sources and self-tested (not active);
                it carries `BUNDLE.json` (key id, sequence) from the moment it is complete
5. `models`     model files copied into the models folder and the registry updated (an adapter
                only for a registered base); the registry's previous bytes are kept in staging
                first, and it is put back if a later phase fails or the process dies before 6
6. `activated`  `current` switched atomically; a health check reverts if the version fails
7. `recorded`   the key's sequence is saved; staging removed

A crash before 6 leaves the old version active (the orphaned version is removed by `recover`, and
the model registry is put back); a crash after 6 leaves the new one active (with the new models)
and `recover` records its sequence.
The crash tests kill the process from their own harness after a phase (`tests/test_bundle_crash.py`);
nothing here kills its own process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kb.build import BuildReport, SourceSpec, build, collect
from kb.bundle.embeddings import precomputed_embedder, read_embeddings
from kb.bundle.limits import Limits
from kb.bundle.models import InstalledModel, install_model_files
from kb.bundle.sign import trusted_keys
from kb.bundle.stage import CopyProgress, copy_to_staging
from kb.bundle.state import ImportState, exclusive, fsync_dir, revoked_keys
from kb.bundle.verify import VerifiedBundle, verify_staged
from kb.embed import Embedder
from kb.errors import BundleError, ShifuError
from kb.selftest import self_test as default_self_test
from kb.versions import VersionStore

PROVENANCE = "BUNDLE.json"
PHASES = ("copied", "verified", "revoked", "built", "models", "activated", "recorded")
BUILDING_NOTE = "building-version"
REGISTRY_BEFORE = "registry-before"  # the model registry's bytes before this import changed it
REGISTRY_ABSENT = "registry-absent"  # ... or the mark that there was no registry file
Progress = Callable[[str], None]


class ImportRefused(BundleError):
    """A bundle was refused; carries what was known about it for the import log."""

    def __init__(self, message: str, *, kind: str = "", key_id: str = "", sequence: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.key_id = key_id
        self.sequence = sequence


@dataclass
class ImportContext:
    """Where things live and what to use; the appliance fills it from its `paths` and settings."""

    kb_dir: Path
    keys_dir: Path
    staging_dir: Path
    state_file: Path
    models_dir: Path
    embedder: Embedder | None = None
    limits: Limits = field(default_factory=Limits)
    progress: Progress = lambda _msg: None
    copy_progress: CopyProgress | None = None
    # Updates the model registry with the installed files (the registry lives outside `kb`) and
    # returns how to put it back as it was, for when a later part of the bundle fails.
    register_models: Callable[[list[InstalledModel]], Callable[[], None] | None] | None = None
    # The registry file `register_models` changes: saved in the import's staging folder first, so
    # that `recover` puts it back after a crash that left the KB part unswitched.
    registry_file: Path | None = None


@dataclass
class ImportResult:
    kind: str
    key_id: str
    sequence: int
    label: str
    version: int | None = None
    previous: int | None = None
    models: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    build: BuildReport | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["build"] = self.build.to_json() if self.build else None
        return data


def _phase(name: str, progress: Progress) -> None:
    """Report a phase as done; everything it made visible is durable by then (the crash and
    fsync-ordering tests hook in here from the outside)."""
    progress(f"phase {name}")


def recover(ctx: ImportContext) -> list[str]:
    """Settle what a killed import left behind; safe to call at every start. Returns what it did."""
    done: list[str] = []
    store = VersionStore(ctx.kb_dir)
    if ctx.staging_dir.is_dir():
        for entry in ctx.staging_dir.iterdir():
            if entry.name.startswith(("import-", "verify-")) and entry.is_dir() and not entry.is_symlink():
                note = entry / BUILDING_NOTE
                building = int(note.read_text().strip()) if note.is_file() and note.read_text().strip().isdigit() else None
                if ctx.registry_file is not None and _restore_registry(entry, ctx.registry_file,
                                                                       keep=building is not None
                                                                       and building == store.current()):
                    done.append(f"model registry put back as it was before the import in {entry.name}")
                if note.is_file() and note.read_text().strip().isdigit():
                    store.discard(store.staging_path(int(note.read_text().strip())))
                shutil.rmtree(entry, ignore_errors=True)
                done.append(f"removed staging {entry.name}")
    if not store.versions_dir.is_dir():
        return done
    state = ImportState.load(ctx.state_file)
    current = store.current()
    changed = False
    for version in store.versions():
        mark = store.path(version) / PROVENANCE
        if not mark.is_file():
            continue
        try:
            info = json.loads(mark.read_text(encoding="utf-8"))
            key, sequence = str(info["key_id"]), int(info["sequence"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if sequence <= state.highest(key):
            continue
        if version == current:  # switched, then killed before the sequence was saved
            state.record(key, sequence, version, str(info.get("label", "")))
            changed = True
            done.append(f"recorded sequence {sequence} of key {key} (version {version})")
        else:  # built, never switched to: an orphan of a killed import
            orphan = store.versions_dir / f".orphan-{version}"
            os.replace(store.path(version), orphan)
            fsync_dir(store.versions_dir)
            shutil.rmtree(orphan, ignore_errors=True)
            done.append(f"removed unfinished version {version}")
    for leftover in store.versions_dir.glob(".orphan-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if changed:
        state.save()
    return done


def import_bundle(source: Path, ctx: ImportContext) -> ImportResult:
    """Import the bundle folder at `source`; raise ImportRefused saying why it was refused."""
    ctx.staging_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(ctx.staging_dir / ".import.lock"):
        for line in recover(ctx):
            ctx.progress(f"recovered: {line}")
        work = ctx.staging_dir / f"import-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            return _import(source, work, ctx)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _import(source: Path, work: Path, ctx: ImportContext) -> ImportResult:
    started = time.monotonic()
    root = work / "bundle"
    try:
        ctx.progress(f"copying {source} to internal staging")
        copy_to_staging(source, root, ctx.limits, ctx.copy_progress)
    except ShifuError as error:
        raise ImportRefused(str(error)) from error
    _phase("copied", ctx.progress)
    state = ImportState.load(ctx.state_file)
    try:
        ctx.progress("checking signature and hashes on the staged copy")
        bundle = verify_staged(root, trusted_keys(ctx.keys_dir), ctx.limits, revoked_keys(state, ctx.keys_dir))
    except ShifuError as error:
        raise ImportRefused(str(error)) from error
    manifest = bundle.manifest

    def refused(message: str) -> ImportRefused:
        return ImportRefused(message, kind=manifest.kind, key_id=bundle.key_id, sequence=manifest.sequence)

    highest = state.highest(bundle.key_id)
    if manifest.sequence <= highest:
        what = "a replay of a bundle already imported" if manifest.sequence == highest else "a downgrade"
        raise refused(f"bundle sequence {manifest.sequence} from key {bundle.key_id} is {what} "
                      f"(highest imported: {highest}); to go back to an earlier KB use `shifu kb rollback`")
    if manifest.kind == "software":
        raise refused("software bundles are verified but installed by the system updater, not `shifu bundle import`")
    if manifest.models and ctx.register_models is None:
        raise refused("this bundle carries models but no model registry was given to the importer")
    _phase("verified", ctx.progress)
    result = ImportResult(kind=manifest.kind, key_id=bundle.key_id, sequence=manifest.sequence,
                          label=manifest.kb_version)
    if manifest.revoke:
        result.revoked = state.revoke(list(manifest.revoke))
        state.save()
    _phase("revoked", ctx.progress)
    store = VersionStore(ctx.kb_dir)
    result.previous = store.current()
    undo_models: Callable[[], None] | None = None
    try:
        if manifest.kb is not None:
            result.build = _build(bundle, store, work, ctx)
            result.version = result.build.version
        _phase("built", ctx.progress)
        if manifest.models and ctx.register_models is not None:
            ctx.progress(f"installing {len(manifest.models)} model file(s)")
            installed = install_model_files(bundle, ctx.models_dir)
            fsync_dir(ctx.models_dir)  # the files' renames, before the registry names them
            if ctx.registry_file is not None:
                _save_registry_journal(work, ctx.registry_file)
            undo_models = ctx.register_models(installed)
            result.models = [m.spec.id for m in installed]
        _phase("models", ctx.progress)
    except ShifuError as error:
        if undo_models is not None:
            undo_models()
        if result.version is not None:
            store.discard(store.path(result.version))
        raise refused(f"the bundle is valid but could not be installed: {error}") from error
    if result.version is not None:
        store.activate(result.version)
        _phase("activated", ctx.progress)
        try:
            _health_check(store, result)
        except ImportRefused:
            if undo_models is not None:  # all or nothing: the registry goes back with the KB
                undo_models()
            raise
    _drop_registry_journal(work)  # from here on a crash keeps the new pair (the import counts)
    state.record(bundle.key_id, manifest.sequence, result.version, manifest.kb_version)
    state.save()
    _phase("recorded", ctx.progress)
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _save_registry_journal(work: Path, registry: Path) -> None:
    if registry.exists():
        data, name = registry.read_bytes(), REGISTRY_BEFORE
    else:
        data, name = b"", REGISTRY_ABSENT
    with open(work / name, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    # The journal must outlive a power cut before the registry changes: its own folder, and the
    # entries that lead to it (the import folder in staging, staging in the state folder), which
    # were created without a sync. Without these, `recover` found no journal after a cut and the
    # new adapter stayed active beside the old KB (tests/test_bundle_powercut.py).
    fsync_dir(work)
    fsync_dir(work.parent)
    fsync_dir(work.parent.parent)


def _drop_registry_journal(work: Path) -> None:
    found = False
    for name in (REGISTRY_BEFORE, REGISTRY_ABSENT):
        if (work / name).exists():
            (work / name).unlink()
            found = True
    if found:
        fsync_dir(work)


def _restore_registry(work: Path, registry: Path, *, keep: bool) -> bool:
    """After a crash: put the registry back from the journal in `work` unless `keep` (the import's
    KB version was switched to, so the import counts). Returns whether it was put back."""
    before, absent = work / REGISTRY_BEFORE, work / REGISTRY_ABSENT
    if keep or not (before.is_file() or absent.is_file()):
        return False
    if absent.is_file():
        registry.unlink(missing_ok=True)
    else:
        tmp = registry.with_name(f".{registry.name}.recover.tmp")
        with open(tmp, "wb") as handle:
            handle.write(before.read_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, registry)
    fsync_dir(registry.parent)
    return True


def _build(bundle: VerifiedBundle, store: VersionStore, work: Path, ctx: ImportContext) -> BuildReport:
    assert bundle.manifest.kb is not None
    specs = [
        SourceSpec(folder=bundle.root / s.folder, mapping=bundle.root / s.mapping if s.mapping else None)
        for s in bundle.manifest.kb.sources
    ]
    embedder = ctx.embedder
    info = bundle.manifest.embeddings
    if embedder is not None and info is not None:
        if info.model == embedder.model_id:
            vectors = read_embeddings(bundle.root, info)
            embedder = precomputed_embedder(embedder, collect(specs).chunks, vectors)
            ctx.progress(f"using {len(vectors)} precomputed vectors from the bundle")
        else:
            ctx.progress(f"bundle vectors are for {info.model}, this appliance uses {embedder.model_id}: re-embedding")
    # Tell `recover` which half-built directory belongs to this import, should it be killed.
    # Synced: after a power cut `recover` decides by it whether the registry goes back.
    with open(work / BUILDING_NOTE, "w", encoding="utf-8") as note:
        note.write(str(store.next_number()))
        note.flush()
        os.fsync(note.fileno())
    fsync_dir(work)

    def test_and_mark(version_dir: Path) -> None:
        default_self_test(version_dir, specs)
        _mark(version_dir, bundle)  # before COMPLETE exists, so a complete version always has its provenance

    return build(specs, store, embedder, activate=False, self_test=test_and_mark, progress=ctx.progress)


def _mark(version_dir: Path, bundle: VerifiedBundle) -> None:
    data = {"key_id": bundle.key_id, "sequence": bundle.manifest.sequence, "label": bundle.manifest.kb_version,
            "created": bundle.manifest.created}
    with open(version_dir / PROVENANCE, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _health_check(store: VersionStore, result: ImportResult) -> None:
    """Open the now active version the way the engine does; switch back if it fails."""
    from kb.reader import KnowledgeBase

    try:
        kbase = KnowledgeBase(store.current_path())
        try:
            keys = kbase.known_keys()
            if keys and kbase.lookup(keys[0]).entry is None:
                raise BundleError(f"code {keys[0]} cannot be looked up")
        finally:
            kbase.close()
    except ShifuError as error:
        if result.previous is not None:
            store.activate(result.previous)
        raise ImportRefused(f"the new version failed its health check and was switched back: {error}",
                            kind=result.kind, key_id=result.key_id, sequence=result.sequence) from error
