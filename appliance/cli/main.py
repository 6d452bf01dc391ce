"""`shifu`: the console script. Errors become messages and exit codes here, at the edge.

Exit codes: 0 answered (also when only the standard procedure could be given),
2 bad usage or unacceptable input, 1 failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kb.errors import ShifuError


class ShifuGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShifuError as error:
            click.echo(f"shifu: {error}", err=True)
            ctx.exit(error.exit_code)


def settings() -> Any:
    from appliance.config import load_settings
    from appliance.engine.factory import configure_chroma

    config = load_settings()
    configure_chroma(config)
    return config


@click.group(cls=ShifuGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shifu")
def cli() -> None:
    """Shifu (師傅): offline troubleshooting for the factory floor."""


# -- ask -----------------------------------------------------------------------------------
@cli.command()
@click.argument("query", required=False)
@click.option("--machine", "machine", default="", help="Machine id, looked up in the inventory (picks its model's procedure).")
@click.option("--model", "machine_model", default="", help="Machine model, when no machine id is at hand (e.g. CV-200).")
@click.option("--lang", type=click.Choice(["zh-TW", "en"]), default=None, help="Answer language (default from config).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer object (see schemas/answer.schema.json).")
@click.option("--no-llm", is_flag=True, help="Standard procedure, history and sources only; do not run the model.")
def ask(query: str | None, machine: str, machine_model: str, lang: str | None, as_json: bool, no_llm: bool) -> None:
    """Answer an error code or a symptom. Without QUERY: ask interactively, one per line."""
    from appliance.engine.factory import make_engine

    if machine and machine_model:
        # A machine id already names its model; two answers to one question would contradict.
        raise click.UsageError("give --machine ID or --model MODEL, not both")
    config = settings()
    engine = make_engine(config)
    language = lang or config.general.lang
    if query is not None:
        code = _ask_once(engine, query, machine, machine_model, language, as_json, no_llm)
        engine.close()
        sys.exit(code)
    prompt_text = "錯誤代碼或問題 / code or problem (Ctrl+D 離開): "
    while True:
        try:
            line = input(prompt_text)
        except (EOFError, KeyboardInterrupt):
            click.echo()
            break
        if line.strip() in {"", "exit", "quit"}:
            if line.strip():
                break
            continue
        _ask_once(engine, line, machine, machine_model, language, as_json, no_llm)
    engine.close()


def _ask_once(engine: Any, text: str, machine: str, machine_model: str, lang: str, as_json: bool,
              no_llm: bool) -> int:
    from appliance.cli.render import TextPrinter
    from appliance.engine.types import Done, Query

    query = Query(text=text, machine_id=machine, machine_model=machine_model, source="cli", lang=lang)
    printer = TextPrinter(sys.stdout, lang)
    try:
        for event in engine.stream(query, use_model=not no_llm):
            if as_json:
                if isinstance(event, Done):
                    click.echo(json.dumps(event.answer.to_json(), ensure_ascii=False, indent=2))
                continue
            printer.show(event, text)
    except ShifuError as error:
        click.echo(f"shifu: {error}", err=True)
        return error.exit_code
    return 0


# -- kb ------------------------------------------------------------------------------------
@cli.group()
def kb() -> None:
    """Knowledge base: build, status, versions, rollback, search."""


def _store() -> Any:
    from appliance import paths
    from kb.versions import VersionStore

    paths.ensure_state()
    return VersionStore(paths.kb_dir())


@kb.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--mapping", "mappings", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mapping file; give one per SOURCE, in the same order (or one for a single SOURCE).")
@click.option("--no-activate", is_flag=True, help="Build and self-test, but keep the current version active.")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
def kb_build(sources: tuple[Path, ...], mappings: tuple[Path, ...], no_activate: bool, as_json: bool) -> None:
    """Build a new KB version from SOURCE folders; activated only after its self-test passes."""
    from kb.build import SourceSpec, build
    from kb.embed import SentenceTransformerEmbedder

    if mappings and len(mappings) != len(sources):
        raise click.UsageError("give one --mapping per SOURCE (in the same order), or none")
    specs = [SourceSpec(folder=s, mapping=mappings[i] if mappings else None) for i, s in enumerate(sources)]
    config = settings()
    embedder = SentenceTransformerEmbedder(config.retrieval.embedding_model) if config.retrieval.dense else None
    report = build(specs, _store(), embedder, activate=not no_activate,
                   progress=(lambda m: None) if as_json else (lambda m: click.echo(m, err=True)))
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
        return
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    state = "active" if report.activated else "built (not active)"
    click.echo(
        f"KB version {report.version} {state}: {report.codes} code rows, {report.records} repair records, "
        f"{report.documents} files, {report.chunks} passages ({report.embedded} embedded, {report.reused} reused) "
        f"in {report.seconds}s"
    )


@kb.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def kb_status(as_json: bool) -> None:
    """The active KB version and what it holds."""
    from kb.reader import KnowledgeBase

    store = _store()
    kbase = KnowledgeBase(store.current_path())
    data = {"version": kbase.version, "name": kbase.meta.get("name", ""), "path": str(kbase.dir),
            "embedding_model": kbase.embedding_model, "counts": kbase.counts(), "versions": store.versions()}
    kbase.close()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"active version {data['version']} ({data['name']}) at {data['path']}")
    for name, count in data["counts"].items():
        click.echo(f"  {name:10} {count}")
    click.echo(f"  versions   {data['versions']}")


@kb.command("versions")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def kb_versions(as_json: bool) -> None:
    """List KB versions; the active one is marked."""
    store = _store()
    current = store.current()
    if as_json:
        click.echo(json.dumps({"current": current, "versions": store.versions()}))
        return
    for version in store.versions():
        click.echo(f"{'*' if version == current else ' '} {version}")


@kb.command("rollback")
@click.argument("version", required=False, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def kb_rollback(version: int | None, as_json: bool) -> None:
    """Activate VERSION, or the version before the active one."""
    chosen = _store().rollback(version)
    click.echo(json.dumps({"current": chosen}) if as_json else f"KB version {chosen} is active")


@kb.command("search")
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="Number of passages.")
@click.option("--mode", type=click.Choice(["hybrid", "fts", "dense"]), default="hybrid", show_default=True,
              help="Retrieval mode.")
@click.option("--model", "machine_model", default="", metavar="MODEL",
              help="Only this machine model's code rows (others' copies of a text are left out).")
@click.option("--json", "as_json", is_flag=True, help="Print passages as JSON.")
def kb_search(query: str, k: int, mode: str, machine_model: str, as_json: bool) -> None:
    """Search the active KB's passages."""
    from kb.embed import SentenceTransformerEmbedder
    from kb.reader import KnowledgeBase

    config = settings()
    embedder = SentenceTransformerEmbedder(config.retrieval.embedding_model) if config.retrieval.dense else None
    kbase = KnowledgeBase(_store().current_path(), embedder)
    result = kbase.search(query, k, mode=mode, machine_model=machine_model)
    if as_json:
        click.echo(json.dumps([p.to_json() for p in result.passages], ensure_ascii=False, indent=2))
        return
    for p in result.passages:
        models = f" [{', '.join(p.machine_models)}]" if p.machine_models else ""
        click.echo(f"[{p.n}] {p.score:.4f} {p.source} > {p.section}{models}")
        click.echo("    " + " ".join(p.text.split())[:160])
    for notice in result.notices:
        click.echo(f"notice: {notice}", err=True)


# -- doctor --------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--load-model", is_flag=True, help="Also load the model and generate one token.")
def doctor(as_json: bool, load_model: bool) -> None:
    """What is installed, loaded and healthy."""
    from appliance.cli.doctor import checks

    results = checks(settings(), load_model=load_model)
    healthy = all(item["ok"] for item in results)
    if as_json:
        click.echo(json.dumps({"healthy": healthy, "checks": results}, ensure_ascii=False, indent=2))
    else:
        for item in results:
            click.echo(f"{'ok ' if item['ok'] else 'BAD'} {item['name']:12} {item['detail']}")
    sys.exit(0 if healthy else 1)


# Command groups that live in their own modules; each exposes `register(cli)`.
PLUGIN_MODULES = (
    "appliance.cli.kiosk_cmd",
    "appliance.cli.kb_eval_cmd",
    "appliance.cli.serial_cmd",
    "appliance.cli.intake_cmd",
    "appliance.cli.bundle_cmd",
    "appliance.cli.model_cmd",
    "appliance.cli.eval_cmd",
    "appliance.cli.serve_cmd",
    "appliance.cli.report_cmd",
)


def _register_plugins() -> None:
    import importlib
    import importlib.util

    for name in PLUGIN_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(cli)


_register_plugins()


def main() -> None:
    cli(prog_name="shifu")


if __name__ == "__main__":
    main()
