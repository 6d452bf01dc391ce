"""Markdown report with PNG plots for `shifu eval --report DIR`."""

from __future__ import annotations

from pathlib import Path

from appliance.evaluation.metrics import __doc__ as DEFINITIONS
from appliance.evaluation.runner import ConfigResult

METRICS = ("usable", "step_recall", "quoted_from_expected", "procedure_exact", "citation_validity", "refusal_correct",
           "schema_valid", "injection_held")


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _plots(configs: list[ConfigResult], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(configs))
    for i, config in enumerate(configs):
        values = [config.summary.get(m) or 0.0 for m in METRICS]
        ax.bar([x + i * width for x in range(len(METRICS))], values, width, label=config.name)
    ax.set_xticks([x + width * (len(configs) - 1) / 2 for x in range(len(METRICS))], METRICS, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=100)
    plt.close(fig)
    files.append("metrics.png")
    fig, ax = plt.subplots(figsize=(9, 4))
    for config in configs:
        ax.hist([r.latency_ms / 1000 for r in config.results], bins=20, alpha=0.6, label=config.name)
    ax.set_xlabel("seconds per answer")
    ax.set_ylabel("items")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=100)
    plt.close(fig)
    files.append("latency.png")
    return files


def write_report(configs: list[ConfigResult], out: Path, evalset: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(configs, out)
    lines = [f"# Shifu answer evaluation: {evalset}", ""]
    header = ["metric", *[c.name for c in configs]]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for metric in (*METRICS, "latency_p50_ms", "latency_p95_ms", "items"):
        lines.append("| " + " | ".join([metric, *[_fmt(c.summary.get(metric)) for c in configs]]) + " |")
    for config in configs:
        lines += ["", f"## {config.name}: by language", "", "| lang | items | " + " | ".join(METRICS) + " |",
                  "|" + "---|" * (len(METRICS) + 2)]
        for lang, summary in config.by_lang.items():
            lines.append(f"| {lang} | {summary['items']} | " + " | ".join(_fmt(summary.get(m)) for m in METRICS) + " |")
        lines += ["", f"## {config.name}: by kind", "", "| kind | items | " + " | ".join(METRICS) + " |",
                  "|" + "---|" * (len(METRICS) + 2)]
        for kind, summary in config.by_kind.items():
            lines.append(f"| {kind} | {summary['items']} | " + " | ".join(_fmt(summary.get(m)) for m in METRICS) + " |")
    lines += ["", *[f"![{p}]({p})" for p in plots], "", "## Definitions", "", (DEFINITIONS or "").strip(), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
