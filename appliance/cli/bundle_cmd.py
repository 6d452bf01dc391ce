"""`shifu bundle ...`, `shifu export`, `shifu backup`, `shifu restore`: the USB stick commands.

The work is done in `kb.bundle`; this module supplies the appliance's paths, settings,
model registry and import log, shows progress, and turns errors into messages.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from kb.errors import BundleError, ModelError, ShifuError

STATE_FILE = "bundle-state.json"


def _passphrase(var: str | None) -> bytes | None:
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        raise BundleError(f"environment variable {var} (given with --passphrase-env) is not set")
    return value.encode("utf-8")


def _settings() -> Any:
    from appliance.config import load_settings

    return load_settings()


def _bundle_limits(config: Any) -> Any:
    from kb.bundle.limits import Limits

    return Limits.from_settings(getattr(config, "bundle", None))


def _embedder(config: Any) -> Any:
    if not config.retrieval.dense:
        return None
    from kb.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(config.retrieval.embedding_model)


def _say(quiet: bool) -> Any:
    return (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))


@contextmanager
def _byte_progress(label: str, enabled: bool) -> Iterator[Any]:
    """A rich progress bar fed with (path, done, total); a no-op when output is JSON."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(_path: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def register(cli: click.Group) -> None:
    cli.add_command(bundle)
    cli.add_command(export_cmd)
    cli.add_command(backup_cmd)
    cli.add_command(restore_cmd)


@click.group()
def bundle() -> None:
    """Signed USB bundles: keygen, build, verify (engineer); import (appliance)."""


# -- engineer side -------------------------------------------------------------------------
@bundle.command("keygen")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for NAME.key (keep secret) and NAME.pub (install on appliances).")
@click.option("--name", default="shifu", show_default=True, help="Key file name without suffix.")
@click.option("--passphrase-env", "passphrase_env", default=None,
              help="Protect the private key with the passphrase in this environment variable.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def keygen_cmd(out: Path, name: str, passphrase_env: str | None, as_json: bool) -> None:
    """Create an Ed25519 signing key pair."""
    from kb.bundle.sign import keygen

    pair = keygen(out, name, _passphrase(passphrase_env))
    data = {"private": str(pair.private_path), "public": str(pair.public_path), "key_id": pair.key_id}
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"key {pair.key_id}: private {pair.private_path} (keep it secret), public {pair.public_path}")
    click.echo("install the .pub file in the appliance's keys directory to trust bundles signed with it")


@bundle.command("build")
@click.argument("sources", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="New folder for the bundle.")
@click.option("--sign", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key file (NAME.key); its sequence counter NAME.seq sits beside it.")
@click.option("--sequence", type=int, default=None, help="Use this sequence number instead of the counter's next.")
@click.option("--passphrase-env", "passphrase_env", default=None, help="Environment variable holding the key's passphrase.")
@click.option("--mapping", "mappings", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mapping file; one per SOURCE, in order (a SOURCE's own kb.toml is used otherwise).")
@click.option("--label", default="", help="KB version label people read, e.g. '2025-06 line 3'.")
@click.option("--model", "model_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Base GGUF model to ship (id = file stem).")
@click.option("--adapter", "adapter_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="LoRA GGUF adapter to ship (id = file stem).")
@click.option("--adapter-base", default="", help="sha256 of the base model the adapters were trained on.")
@click.option("--activate-model", is_flag=True, help="Make the shipped model/adapter the active one on import.")
@click.option("--model-label", default="", help="Model version label people read.")
@click.option("--revoke", "revoke", multiple=True, help="Key id the appliances must stop trusting (repeatable).")
@click.option("--software", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder with a software upgrade (kind 'software'; installed by the system updater).")
@click.option("--no-embeddings", is_flag=True, help="Do not ship precomputed vectors (appliances embed instead).")
@click.option("--reuse-kb", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="KB version folder whose stored vectors are reused (default: the local active KB, if any).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
def build_cmd(sources: tuple[Path, ...], out: Path, key_file: Path, sequence: int | None, passphrase_env: str | None,
              mappings: tuple[Path, ...], label: str, model_files: tuple[Path, ...], adapter_files: tuple[Path, ...],
              adapter_base: str, activate_model: bool, model_label: str, revoke: tuple[str, ...],
              software: Path | None, no_embeddings: bool, reuse_kb: Path | None, as_json: bool) -> None:
    """Build and sign a bundle from KB SOURCE folders and/or model files."""
    from kb.build import SourceSpec
    from kb.bundle.pack import BundlePlan, ModelFile, build_bundle
    from kb.versions import DB_NAME

    if mappings and len(mappings) != len(sources):
        raise click.UsageError("give one --mapping per SOURCE (in the same order), or none")
    specs = [SourceSpec(folder=s, mapping=mappings[i] if mappings else None) for i, s in enumerate(sources)]
    models = [ModelFile(file=f, id=f.stem, activate=activate_model) for f in model_files]
    models += [ModelFile(file=f, id=f.stem, kind="adapter", base_sha256=adapter_base, activate=activate_model)
               for f in adapter_files]
    plan = BundlePlan(sources=specs, models=models, label=label, model_label=model_label, revoke=list(revoke),
                      software=software)
    config = _settings()
    embedder = None if no_embeddings or not specs else _embedder(config)
    reuse_db = reuse_kb / DB_NAME if reuse_kb else _local_kb_db()
    manifest = build_bundle(plan, out, key_file, passphrase=_passphrase(passphrase_env), sequence=sequence,
                            embedder=embedder, reuse_db=reuse_db, limits=_bundle_limits(config),
                            progress=_say(as_json))
    summary = _summary(manifest)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        click.echo(f"bundle {out}: {summary['kind']} '{summary['kb_version']}', sequence {summary['sequence']}, "
                   f"key {summary['key_id']}, {summary['files']} files")


def _local_kb_db() -> Path | None:
    from appliance import paths
    from kb.versions import DB_NAME, VersionStore

    store = VersionStore(paths.kb_dir())
    current = store.current()
    return store.path(current) / DB_NAME if current is not None else None


def _summary(manifest: Any) -> dict[str, Any]:
    return {
        "kind": manifest.kind, "kb_version": manifest.kb_version, "model_version": manifest.model_version,
        "sequence": manifest.sequence, "key_id": manifest.key_id, "created": manifest.created,
        "files": len(manifest.files), "bytes": sum(f.size for f in manifest.files),
        "embeddings": manifest.embeddings.count if manifest.embeddings else 0,
        "models": [m.id for m in manifest.models], "revoke": list(manifest.revoke),
    }


@bundle.command("verify")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "keys", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust this .pub file (default: the keys directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(path: Path, keys: tuple[Path, ...], as_json: bool) -> None:
    """Check a bundle's signature and every file's hash (on a private copy), without importing it."""
    from appliance import paths
    from kb.bundle.sign import key_id, load_public, trusted_keys
    from kb.bundle.stage import copy_to_staging
    from kb.bundle.state import ImportState, revoked_keys
    from kb.bundle.verify import verify_staged

    config = _settings()
    limits = _bundle_limits(config)
    trusted = {key_id(k): k for k in map(load_public, keys)} if keys else trusted_keys(paths.keys_dir())
    state = ImportState.load(paths.state_dir() / STATE_FILE)
    work = Path(tempfile.mkdtemp(prefix="shifu-verify-"))
    try:
        try:
            with _byte_progress("copying", not as_json) as update:
                copy_to_staging(path, work / "bundle", limits, update)
            verified = verify_staged(work / "bundle", trusted, limits, revoked_keys(state, paths.keys_dir()))
        except ShifuError as error:
            if as_json:
                click.echo(json.dumps({"ok": False, "error": str(error)}))
                raise SystemExit(1) from error
            raise
        summary = _summary(verified.manifest)
        highest = state.highest(verified.key_id)
        summary.update(ok=True, importable=verified.manifest.sequence > highest, highest_imported=highest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    click.echo(f"OK: signed by {summary['key_id']}, {summary['kind']} '{summary['kb_version']}', "
               f"sequence {summary['sequence']}, {summary['files']} files, every hash matches")
    if not summary["importable"]:
        click.echo(f"note: this appliance already imported sequence {highest} from that key; import would refuse it")


# -- appliance side ------------------------------------------------------------------------
def import_context(config: Any, progress: Any, copy_progress: Any = None) -> Any:
    """The importer's context filled from the appliance's paths and settings."""
    from appliance import paths
    from kb.bundle.importer import ImportContext

    paths.ensure_state()
    return ImportContext(
        kb_dir=paths.kb_dir(), keys_dir=paths.keys_dir(), staging_dir=paths.staging_dir(),
        state_file=paths.state_dir() / STATE_FILE, models_dir=paths.models_dir(), embedder=_embedder(config),
        limits=_bundle_limits(config), progress=progress, copy_progress=copy_progress,
        register_models=register_models,
        registry_file=paths.models_toml(),
    )


def register_models(installed: list[Any]) -> Callable[[], None]:
    """Add imported model files to models.toml (same id replaced), activating them if asked.

    Every adapter must belong to a registered base (its base sha256, as `shifu model activate`
    checks), bases of the same bundle included; otherwise nothing is changed. Returns the undo the
    importer calls when a later part of the bundle fails: the registry file as it was before.
    Every file's GGUF header must fit its entry (an adapter its base: architecture, vocabulary,
    context, tensor shapes), and a pair about to become active must load and generate a few
    tokens on the CPU (appliance.llm.health); otherwise the registry is not written at all.
    """
    from dataclasses import replace

    from appliance import paths
    from appliance.llm.health import check_activation
    from models.registry import ModelEntry, activate, base_for, load_registry, save_registry, write_durably

    path = paths.models_toml()
    before = path.read_bytes() if path.exists() else None
    registry = load_registry(path)
    pair_before = _active_files(registry)
    for item in sorted(installed, key=lambda i: i.spec.kind == "adapter"):  # bases first
        spec = item.spec
        entry = ModelEntry(id=spec.id, path=item.path, sha256=item.sha256, kind=spec.kind,
                           base_sha256=spec.base_sha256, n_ctx=spec.n_ctx, chat_template=spec.chat_template,
                           quantization=spec.quantization, architecture=spec.architecture)
        entries = registry.adapters if spec.kind == "adapter" else registry.bases
        entries[:] = [e for e in entries if e.id != spec.id] + [replace(entry)]
        if spec.kind == "adapter" and base_for(registry, entry, paths.state_dir() / "hashes.json") is None:
            raise ModelError(f"adapter {spec.id} was trained for a base (sha256 {spec.base_sha256[:12]}...) that "
                             "is neither in this bundle nor registered here; nothing was changed")
    for item in installed:
        if item.spec.activate:
            activate(registry, item.spec.id, paths.state_dir() / "hashes.json")
    _check_installed(registry, installed)
    if _active_files(registry) != pair_before:
        check_activation(registry, hash_cache=paths.state_dir() / "hashes.json")

    def undo() -> None:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            write_durably(path, before)

    save_registry(registry, path)
    return undo


def _active_files(registry: Any) -> list[tuple[str, str, str]]:
    """What the active pair is made of: its entries' ids, paths and hashes."""
    try:
        entries = [registry.base(), registry.adapter()]
    except ModelError:
        return []
    return [(e.id, str(e.path), e.sha256) for e in entries if e is not None]


def _check_installed(registry: Any, installed: list[Any]) -> None:
    """Each imported file's header against its entry, each adapter's against its base (ModelError)."""
    from appliance import paths
    from models.gguf_check import check_base, check_pair
    from models.registry import base_for

    ids = {item.spec.id for item in installed}
    for entry in registry.bases:
        if entry.id in ids:
            check_base(entry)
    for entry in registry.adapters:
        if entry.id in ids:
            base = base_for(registry, entry, paths.state_dir() / "hashes.json")
            assert base is not None  # register_models refused an adapter without its base
            check_pair(base, entry)


def log_import(path: Path, *, kind: str, key_id: str, sequence: int | None, result: str, message: str) -> None:
    """One row in the operational database's `imports` table, accepted or refused."""
    from appliance import paths
    from appliance.store.opstore import OpStore

    try:
        store = OpStore(paths.ops_db())
    except (ShifuError, OSError, sqlite3.Error):  # the outcome must still reach the user
        return
    try:
        with store.db.conn:
            store.db.conn.execute(
                "INSERT INTO imports (created, kind, path, key_id, sequence, result, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [time.time(), kind, str(path), key_id, sequence, result, message],
            )
    finally:
        store.close()


@bundle.command("import")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_cmd(path: Path, as_json: bool) -> None:
    """Import a signed bundle: stage, verify, build, self-test, switch; the old KB stays for rollback."""
    from kb.bundle.importer import ImportRefused, import_bundle

    config = _settings()
    with _byte_progress("copying from the stick", not as_json) as update:
        ctx = import_context(config, _say(as_json), update)
        try:
            result = import_bundle(path, ctx)
        except ImportRefused as error:
            log_import(path, kind=error.kind, key_id=error.key_id, sequence=error.sequence, result="refused",
                       message=str(error))
            if as_json:
                click.echo(json.dumps({"ok": False, "error": str(error), "key_id": error.key_id,
                                       "sequence": error.sequence}))
                raise SystemExit(error.exit_code) from error
            raise BundleError(f"bundle refused, nothing was changed: {error}") from error
    message = f"KB version {result.version} active (was {result.previous})" if result.version else "installed"
    if result.models:
        message += f"; models {', '.join(result.models)}"
    log_import(path, kind=result.kind, key_id=result.key_id, sequence=result.sequence, result="accepted",
               message=message)
    if as_json:
        click.echo(json.dumps({"ok": True, **result.to_json()}, ensure_ascii=False, indent=2))
        return
    click.echo(f"bundle '{result.label}' (sequence {result.sequence}, key {result.key_id}) imported: {message}"
               f" in {result.seconds}s; `shifu kb rollback` returns to the previous version")


# -- loop data and replacement PCs ---------------------------------------------------------
@click.command("export")
@click.argument("dest", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export_cmd(dest: Path, as_json: bool) -> None:
    """Export audit log, feedback and alarms as CSV and JSONL (for the training loop) into DEST."""
    from appliance import paths
    from appliance.store.export import export_loop_data

    folder = export_loop_data(paths.ops_db(), dest,
                              None if as_json else lambda t, n: click.echo(f"{t}: {n} rows", err=True))
    counts = json.loads((folder / "export.json").read_text())["counts"]
    click.echo(json.dumps({"path": str(folder), "counts": counts}) if as_json else f"exported to {folder}")


def _state_files() -> dict[str, Path]:
    from appliance import paths

    return {"shifu.toml": paths.config_file(), "keys": paths.keys_dir(), "models.toml": paths.models_toml(),
            STATE_FILE: paths.state_dir() / STATE_FILE}


@click.command("backup")
@click.argument("dest", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backup_cmd(dest: Path, as_json: bool) -> None:
    """Back up the operational database, config, trusted keys and model registry into DEST."""
    from appliance import paths
    from appliance.store.backup import backup

    folder = backup(dest, paths.ops_db(), _state_files(), progress=_say(as_json))
    click.echo(json.dumps({"path": str(folder)}) if as_json else f"backup written to {folder}")


@click.command("restore")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an operational database that already holds data.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def restore_cmd(src: Path, force: bool, as_json: bool) -> None:
    """Restore a backup made with `shifu backup` (for a replacement PC)."""
    from appliance import paths
    from appliance.store.backup import restore

    paths.ensure_state()
    done = restore(src, paths.ops_db(), _state_files(), force=force, progress=_say(as_json))
    if as_json:
        click.echo(json.dumps({"restored": done}))
        return
    for item in done:
        click.echo(f"restored {item}")
    for warning in _missing_model_files():
        click.echo(f"warning: {warning}", err=True)


def _missing_model_files() -> list[str]:
    """Registry entries whose files did not come back (model files travel by bundle, not backup)."""
    from appliance import paths
    from models.registry import load_registry

    try:
        registry = load_registry(paths.models_toml())
    except ShifuError as error:
        return [str(error)]
    return [f"model {e.id}: {e.path} is missing; import its bundle again"
            for e in registry.bases + registry.adapters if not e.path.exists()]
