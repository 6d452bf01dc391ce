"""`shifu eval EVALSET`: answer quality side by side across configurations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def register(cli: click.Group) -> None:
    cli.add_command(eval_command)


@click.command("eval")
@click.argument("evalset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.md with PNG plots into this folder.")
@click.option("--config", "configs", multiple=True,
              type=click.Choice(["no-retrieval", "retrieval", "free", "quote", "adapter"]),
              help="Configurations to compare (default: all that apply). `retrieval` answers in the model's own "
                   "answer mode; `free` and `quote` force one (model.answer_mode), retrieval on.")
@click.option("--limit", type=int, default=None, help="Only the first N items.")
@click.option("--every", type=click.IntRange(1), default=1,
              help="Only every Nth item (a sample across the set's kinds and languages).")
def eval_command(evalset: Path, as_json: bool, report_dir: Path | None, configs: tuple[str, ...],
                 limit: int | None, every: int) -> None:
    """Run the engine over an evaluation set and compare configurations."""
    from appliance import paths
    from appliance.config import load_settings
    from appliance.engine.factory import make_engine
    from appliance.evaluation.report import write_report
    from appliance.evaluation.runner import load_items, run_config
    from models.registry import load_registry

    items = load_items(evalset)[::every]
    items = items[:limit] if limit else items
    base = load_settings()
    has_adapter = bool(load_registry(paths.models_toml()).active_adapter)
    wanted = list(configs) or ["no-retrieval", "free", "quote", *(["adapter"] if has_adapter else [])]
    results = []
    shared_backend: Any = None
    for name in wanted:
        overrides: dict[str, Any] = {}
        if name == "no-retrieval":
            overrides = {"retrieval": base.retrieval.model_copy(update={"enabled": False})}
        elif name in {"free", "quote"}:
            overrides = {"model": base.model.model_copy(update={"answer_mode": name})}
        settings = base.model_copy(update=overrides)
        engine = make_engine(settings)
        if name != "adapter":
            # The base model without the adapter, loaded once and shared by the base configurations.
            if shared_backend is None:
                from appliance.engine.factory import make_backend

                registry_less = settings.model_copy()
                shared_backend = make_backend(registry_less, adapter=False)
            engine.set_backend(shared_backend)
        results.append(run_config(name, engine, items, progress=lambda m: click.echo(m, err=True) if not as_json else None))
    data = {"evalset": str(evalset), "configs": {r.name: r.summary for r in results},
            "by_kind": {r.name: r.by_kind for r in results}, "by_lang": {r.name: r.by_lang for r in results}}
    if report_dir is not None:
        data["report"] = str(write_report(results, report_dir, evalset.name))
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    for result in results:
        click.echo(f"{result.name}:")
        for key, value in result.summary.items():
            click.echo(f"  {key:18} {value}")
    if report_dir is not None:
        click.echo(f"report: {data['report']}")
