"""The loss curve as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def loss_curve(losses: list[float], path: Path, *, title: str, eval_loss: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    steps = list(range(1, len(losses) + 1))
    axes.plot(steps, losses, color="#9bb7d4", linewidth=1, label="training loss (per step)")
    window = max(1, len(losses) // 10)
    if window > 1:
        smooth = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
                  for i in range(len(losses))]
        axes.plot(steps, smooth, color="#1f4e79", linewidth=2, label=f"moving mean ({window} steps)")
    if eval_loss is not None:
        axes.axhline(eval_loss, color="#c0504d", linestyle="--", label=f"eval loss {eval_loss:.3f}")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy on answer tokens")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
