"""`shifu kb eval QUERIES.jsonl`: retrieval quality of the active KB (recall@k, MRR) and, for
symptom queries with an `expected_code`, the likely-code recall@3 per language."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


@click.command("eval")
@click.argument("queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", "k", default=5, show_default=True, help="Passages per query (recall@k, MRR@k).")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["fts", "dense", "hybrid"]),
              help="Retrieval mode to score (repeatable; default: all three).")
@click.option("--fail-under", type=float, default=None,
              help="Exit 1 when hybrid recall@k of any language is below this (for CI).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def kb_eval(queries: Path, k: int, modes: tuple[str, ...], fail_under: float | None, as_json: bool) -> None:
    """Score retrieval (recall@k, MRR per mode and language) and symptom answers (likely-code recall@3)."""
    from appliance import paths
    from appliance.cli.main import settings
    from kb.embed import SentenceTransformerEmbedder
    from kb.evaluate import MODES, evaluate, load_queries
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore

    if k < 1:
        raise click.BadParameter("must be at least 1", param_hint="-k")
    labelled = load_queries(queries)
    config = settings()
    embedder = SentenceTransformerEmbedder(config.retrieval.embedding_model) if config.retrieval.dense else None
    kbase = KnowledgeBase(VersionStore(paths.kb_dir()).current_path(), embedder, rrf_k=config.retrieval.rrf_k)
    try:
        report = evaluate(kbase, labelled, k=k, modes=modes or MODES)
    finally:
        kbase.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        _print(report)
    if fail_under is not None and "hybrid" in report.modes:
        low = {lang: s.recall for lang, s in report.modes["hybrid"].by_lang.items() if s.recall < fail_under}
        if low:
            click.echo(f"hybrid recall@{k} below {fail_under}: {low}", err=True)
            sys.exit(1)


def _print(report: Any) -> None:
    click.echo(f"KB version {report.kb_version}, {report.queries} queries, k={report.k}")
    click.echo(f"{'mode':8} {'lang':6} {'n':>4} {'recall@' + str(report.k):>9} {'MRR':>6}")
    for mode, group, n, recall, mrr in report.rows():
        click.echo(f"{mode:8} {group:6} {n:>4} {recall:>9.3f} {mrr:>6.3f}")
    for mode, mode_report in report.modes.items():
        for notice in mode_report.notices:
            click.echo(f"notice ({mode}): {notice}", err=True)
    for lang, score in sorted(report.likely.by_lang.items()):
        click.echo(f"likely-code recall@3 {lang:6} {score.n:>4} {score.recall:>6.3f}")
    for miss in report.likely.misses:
        click.echo(f"  likely miss {miss['id']} [{miss['lang']}] {miss['query']}: want {miss['expected']}, "
                   f"got {', '.join(miss['got']) or '(nothing)'}")
    if "hybrid" in report.modes and report.modes["hybrid"].misses:
        click.echo("hybrid misses:")
        for miss in report.modes["hybrid"].misses:
            got = miss["got"][0] if miss["got"] else "(nothing)"
            click.echo(f"  {miss['id']} [{miss['lang']}] {miss['query']}\n      want {miss['expected']}\n      got  {got}")


def register(cli: click.Group) -> None:
    """Add `eval` to the `kb` group."""
    group = cli.commands.get("kb")
    if not isinstance(group, click.Group):
        raise RuntimeError("the `kb` command group must be registered before appliance.cli.kb_eval_cmd")
    group.add_command(kb_eval)
