"""`shifu data build` and `shifu model finetune|export|list|verify|activate`: the learning loop (engineer side).

Training libraries load only inside `finetune` (models.finetune, the `finetune` extra).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click


def _active_kb() -> Any:
    """The active KB version opened as the engine opens it (same embedder and fusion), or None."""
    from appliance import paths
    from appliance.cli.main import settings as load_settings
    from kb.embed import SentenceTransformerEmbedder
    from kb.reader import KnowledgeBase
    from kb.search.rerank import Tuning
    from kb.versions import VersionStore

    store = VersionStore(paths.kb_dir())
    current = store.current()
    if current is None:
        return None
    retrieval = load_settings().retrieval
    embedder = SentenceTransformerEmbedder(retrieval.embedding_model) if retrieval.dense else None
    return KnowledgeBase(store.path(current), embedder, rrf_k=retrieval.rrf_k,
                         tuning=Tuning(dense_cjk=retrieval.dense_cjk))


def _registry_path() -> Path:
    from appliance import paths

    paths.ensure_state()
    return paths.models_toml()


VERIFY_RECORD = "model-verify.json"  # the last verify's outcome, shown by `shifu doctor`


def _hash_cache() -> Path:
    """The per-boot hash cache (models.registry.fd_sha256): trusted only for the same file in the same boot."""
    from appliance import paths

    return paths.state_dir() / "hashes.json"


@click.group()
def data() -> None:
    """Training data: repair records and kiosk feedback -> chat JSONL."""


@data.command("build")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for train.jsonl, eval.jsonl and summary.json.")
@click.option("--codes", "codes", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Code table file or KB source folder (when INPUTS hold only records or exports).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mapping file for record/code files in another layout (same format as kb.toml).")
@click.option("--holdout-months", default=1, show_default=True, type=click.IntRange(0, 120),
              help="Hold out the latest N calendar months as the evaluation split.")
@click.option("--scrub-names", is_flag=True, help="Replace technician and operator names in the text.")
@click.option("--tokenizer", "tokenizer_gguf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="GGUF whose tokenizer counts tokens (default: the registry's active base).")
@click.option("--answer-mode", "answer_mode", type=click.Choice(["auto", "free", "quote"]), default=None,
              help="Targets in this answer mode (default: model.answer_mode, `auto` = the active base's mode).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_build(inputs: tuple[Path, ...], out: Path, codes: tuple[Path, ...], mapping: Path | None,
               holdout_months: int, scrub_names: bool, tokenizer_gguf: Path | None, answer_mode: str | None,
               as_json: bool) -> None:
    """Build chat JSONL from repair records (CSV/XLSX, KB source folders) and `shifu export` folders."""
    from kb.errors import ModelError
    from models.dataset import build_dataset, format_summary, llama_tokenizer
    from models.dataset_sources import read_sources
    from models.registry import load_registry

    sources = read_sources(list(inputs), codes=list(codes), mapping=mapping)
    if not sources.codes:
        raise click.UsageError("no code table found: give a KB source folder or --codes FILE")
    tokenizer = None
    try:
        gguf = tokenizer_gguf or load_registry(_registry_path()).base().path
        tokenizer = llama_tokenizer(gguf)
    except ModelError as error:
        click.echo(f"warning: tokens not counted: {error}", err=True)
    kb = _active_kb()
    if kb is None:
        click.echo("note: no active KB here; each example shows its code-table row as passage [1] "
                   "(build or import the KB first to train on the passages the engine retrieves)", err=True)
    from appliance.cli.main import settings as load_settings
    from models.prompt import ContextLayout

    config: Any = load_settings()
    layout = ContextLayout(records=2, fixes=1, passages=config.retrieval.prompt_passages)  # as Engine.layout()
    # The mode the adapter will run in: the configured one, else its base's registry default.
    mode = answer_mode or config.model.answer_mode
    languages: tuple[str, ...] = ("zh-TW", "en")
    try:
        base = load_registry(_registry_path()).base()
        languages = base.languages
        if mode == "auto":
            mode = base.answer_mode
    except ModelError:
        pass
    mode = "free" if mode == "auto" else mode
    summary = build_dataset(sources, out, holdout_months=holdout_months, scrub_names=scrub_names,
                            tokenizer=tokenizer, kb=kb, top_k=config.retrieval.top_k, layout=layout,
                            answer_mode=mode, languages=languages)
    if as_json:
        click.echo(json.dumps(summary.to_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(format_summary(summary))
        click.echo(f"written: {out / 'train.jsonl'}, {out / 'eval.jsonl'}")
    if not summary.train:
        sys.exit(1)


@click.group()
def model() -> None:
    """Models: fine-tune, export to GGUF, and the registry (list, verify, activate)."""


@model.command("finetune")
@click.argument("recipe")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder written by `shifu data build`.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the adapter, its loss curve and shifu_adapter.json.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Override the recipe's max_steps.")
def model_finetune(recipe: str, data_dir: Path, out: Path, steps: int | None) -> None:
    """Train a LoRA adapter. RECIPE: a TOML file or a name from models/recipes (embedded-cpu)."""
    try:
        from models.finetune import finetune
        from models.finetune.recipe import load_recipe
    except ImportError as error:
        raise click.ClickException(f"{error}; install the training extra: pip install '.[finetune]'") from error
    spec = load_recipe(recipe)
    if steps is not None:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"max_steps": steps})})
    meta = finetune(spec, data_dir, out, progress=lambda line: click.echo(line, err=True))
    click.echo(f"adapter: {out}  (loss {meta.extra.get('first_loss', 0):.3f} -> {meta.final_loss}, "
               f"{meta.train_seconds}s); loss curve: {out / 'loss.png'}")


@model.command("export")
@click.argument("adapter_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="GGUF file to write.")
@click.option("--dtype", type=click.Choice(["f16", "f32"]), default=None, help="Tensor type (default: recipe's).")
@click.option("--base", "base", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The base GGUF the adapter runs on (default: the one it was trained from).")
@click.option("--id", "ident", default=None, help="Registry id (default: the file name without .gguf).")
@click.option("--register", is_flag=True, help="Add the adapter to the model registry.")
@click.option("--activate", "activate_it", is_flag=True, help="With --register: also make it the active adapter.")
@click.option("--ollama", is_flag=True, help="Also write an Ollama Modelfile next to the adapter.")
def model_export(adapter_dir: Path, out: Path | None, dtype: str | None, base: Path | None, ident: str | None,
                 register: bool, activate_it: bool, ollama: bool) -> None:
    """Write a trained adapter as a GGUF LoRA adapter for llama.cpp."""
    from dataclasses import replace

    from models.adapter_meta import read_meta
    from models.export import export_adapter, write_modelfile
    from models.registry import ModelEntry, activate, file_sha256, load_registry, save_registry, upsert

    meta = read_meta(adapter_dir)
    if base is not None:
        from models.gguf_info import read_info

        info = read_info(base)
        if info.architecture != meta.architecture or info.n_layer != meta.n_layer:
            raise click.UsageError(f"{base.name} is a {info.architecture} model with {info.n_layer} layers; the "
                                   f"adapter was trained on a {meta.architecture} model with {meta.n_layer}")
        meta = replace(meta, base_gguf=str(base.resolve()), base_sha256=file_sha256(base))
    result = export_adapter(adapter_dir, out, dtype=dtype, meta=meta)
    click.echo(f"{result.path}: {result.tensors} tensors, rank {result.rank}, alpha {result.alpha:g}, "
               f"{result.permuted} q/k tensors permuted for {meta.architecture}")
    if ollama:
        if not meta.base_gguf:
            raise click.UsageError("--ollama needs the base GGUF: pass --base FILE")
        click.echo(f"Ollama Modelfile: {write_modelfile(result.path.resolve(), Path(meta.base_gguf))}")
    if register:
        if not meta.base_sha256:
            raise click.UsageError("the adapter does not know its base's sha256: pass --base FILE")
        path = _registry_path()
        registry = load_registry(path)
        entry = ModelEntry(id=ident or result.path.stem, path=result.path.resolve(), kind="adapter",
                           sha256=file_sha256(result.path), base_sha256=meta.base_sha256, n_ctx=meta.n_ctx,
                           chat_template="chatml", quantization=dtype or str(meta.extra.get("export_dtype", "f16")),
                           architecture=meta.architecture)
        upsert(registry, entry)
        for notice in activate(registry, entry.id, _hash_cache()) if activate_it else []:
            click.echo(notice)
        save_registry(registry, path)
        click.echo(f"registered adapter {entry.id}" + (" (active)" if activate_it else ""))


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def model_list(as_json: bool) -> None:
    """Bases and adapters in the registry, with hashes; the active pair is marked."""
    from models.registry import load_registry

    registry = load_registry(_registry_path())
    rows: list[dict[str, Any]] = []
    for entry in registry.bases + registry.adapters:
        active = entry.id in (registry.active_base if entry.kind == "base" else registry.active_adapter,)
        rows.append({"id": entry.id, "kind": entry.kind, "active": active, "path": str(entry.path),
                     "sha256": entry.sha256, "base_sha256": entry.base_sha256, "n_ctx": entry.n_ctx,
                     "chat_template": entry.chat_template, "quantization": entry.quantization,
                     "architecture": entry.architecture})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        mark = "*" if row["active"] else " "
        extra = f" base {row['base_sha256'][:12]}" if row["kind"] == "adapter" else ""
        click.echo(f"{mark} {row['kind']:7} {row['id']:32} {row['quantization'] or '-':6} "
                   f"sha256 {(row['sha256'] or '-')[:12]:12}{extra}  {row['path']}")


@model.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--boot", is_flag=True,
              help="The boot-time root step: remember the hashes in the root-owned per-boot file the loaders trust.")
def model_verify(as_json: bool, boot: bool) -> None:
    """Check every registered file: present, GGUF, hash as recorded (each file read in full), adapter's base registered.

    With --boot (run as root by shifu-model-hash.service before the kiosk, server and intake
    start), what matched is written to /run/shifu-hashes, where the service accounts can read it
    but not write it; the loaders then need not read a 4.7 GB file again this boot."""
    from appliance import paths
    from models.registry import load_registry, save_verify_record, verify_registry

    registry = load_registry(paths.models_toml() if boot else _registry_path())
    cache = _hash_cache()
    if boot:
        cache = paths.boot_hash_file()
        cache.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.umask(0o022)
    checks = verify_registry(registry, cache)
    try:
        # As root, nothing is written into the state folder (the service account owns it).
        save_verify_record(cache.parent / VERIFY_RECORD if boot else paths.state_dir() / VERIFY_RECORD,
                           registry, checks)
    except OSError as error:
        click.echo(f"note: could not record this verify for `shifu doctor`: {error}", err=True)
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for check in checks:
            click.echo(f"{'ok ' if check.ok else 'BAD'} {check.kind:7} {check.id:32} {check.detail}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


@model.command("activate")
@click.argument("ident")
@click.option("--no-health-check", "health_check", flag_value=False, default=True,
              help="Do not load the pair and generate a few tokens before it becomes active.")
def model_activate(ident: str, health_check: bool) -> None:
    """Make base or adapter IDENT active (an adapter brings its base); `none` turns the adapter off.

    The pair's GGUF headers are checked and it must load and generate a few tokens on the CPU
    before the registry names it; running kiosks and servers switch to it between answers."""
    from models.registry import EMBEDDED_ID, activate, load_registry, save_registry

    path = _registry_path()
    registry = load_registry(path)
    for notice in activate(registry, ident, _hash_cache()):
        click.echo(notice)
    if health_check:
        from appliance.llm.health import check_activation

        click.echo("health check: loading the pair on the CPU and generating a few tokens", err=True)
        check_activation(registry, hash_cache=_hash_cache())  # ModelError: the registry is not written
    save_registry(registry, path)
    adapter = f" + adapter {registry.active_adapter}" if registry.active_adapter else ""
    click.echo(f"active: {registry.active_base}{adapter}"
               + ("" if registry.active_base != EMBEDDED_ID else " (embedded)"))


def register(cli: click.Group) -> None:
    cli.add_command(data)
    cli.add_command(model)
