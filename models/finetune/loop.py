"""The training loop both backends share: AdamW on the LoRA weights, warmup then cosine decay.

Plain torch rather than a trainer class: a few dozen lines that behave the same on a laptop
CPU and a rented GPU, report progress in the CLI's words and need no `trl`/`datasets`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from models.finetune.examples import IGNORE, Tokenized
from models.finetune.recipe import TrainSpec

Progress = Callable[[str], None]


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    eval_loss: float | None = None
    seconds: float = 0.0
    steps: int = 0


def total_steps(spec: TrainSpec, n_examples: int) -> int:
    if spec.max_steps:
        return spec.max_steps
    per_step = spec.batch_size * spec.grad_accum
    return max(1, math.ceil(spec.epochs * n_examples / per_step))


def _batch(items: list[Tokenized], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Left-padded, so every answer ends at the last position and only answer logits are computed."""
    width = max(len(i.input_ids) for i in items)
    ids = [[pad_id] * (width - len(i.input_ids)) + i.input_ids for i in items]
    labels = [[IGNORE] * (width - len(i.labels)) + i.labels for i in items]
    mask = [[0] * (width - len(i.input_ids)) + [1] * len(i.input_ids) for i in items]
    return {"input_ids": torch.tensor(ids, device=device), "labels": torch.tensor(labels, device=device),
            "attention_mask": torch.tensor(mask, device=device)}


def answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens.

    The logits (a 49k- or 152k-wide matmul per position) are computed only for the positions
    that predict answer tokens, via transformers' `logits_to_keep`: on a CPU this saves a
    good share of every step, since the prompt is most of each example.
    """
    labels = batch["labels"]
    answer = labels != IGNORE
    first = int(answer.float().argmax(dim=1).min())  # earliest answer position in the batch
    keep = labels.shape[1] - first + 1
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep).logits
    predicted = logits[:, :-1, :].float()  # position t predicts token t + 1
    target = labels[:, first:]
    return torch.nn.functional.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), target.reshape(-1),
                                             ignore_index=IGNORE)


def _schedule(spec: TrainSpec, steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / (spec.warmup_steps + 1)
        progress = (step - spec.warmup_steps) / max(1, steps - spec.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def evaluate(model: Any, items: list[Tokenized], pad_id: int, device: Any) -> float | None:
    """Mean loss per answer token over `items`."""
    if not items:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for item in items:
            loss = answer_loss(model, _batch([item], pad_id, device))
            total += float(loss) * item.answer_tokens
            count += item.answer_tokens
    return total / max(1, count)


def train(model: Any, items: list[Tokenized], spec: TrainSpec, *, pad_id: int, device: Any,
          progress: Progress, eval_items: list[Tokenized] | None = None) -> TrainResult:
    """Train the model's trainable (LoRA) parameters in place."""
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    steps = total_steps(spec, len(items))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(spec, steps))
    order: list[Tokenized] = []
    result = TrainResult(steps=steps)
    started = time.monotonic()
    model.train()
    for step in range(steps):
        step_loss = 0.0
        for _ in range(spec.grad_accum):
            batch: list[Tokenized] = []
            while len(batch) < spec.batch_size:
                if not order:
                    order = list(items)
                    random.shuffle(order)
                batch.append(order.pop())
            loss = answer_loss(model, _batch(batch, pad_id, device)) / spec.grad_accum
            loss.backward()  # type: ignore[no-untyped-call]
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(step_loss)
        elapsed = time.monotonic() - started
        if step == 0 or (step + 1) % max(1, steps // 20) == 0 or step + 1 == steps:
            eta = elapsed / (step + 1) * (steps - step - 1)
            progress(f"step {step + 1}/{steps}  loss {step_loss:.4f}  lr {scheduler.get_last_lr()[0]:.2e}  "
                     f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")
    result.seconds = round(time.monotonic() - started, 1)
    if eval_items:
        result.eval_loss = evaluate(model, eval_items, pad_id, device)
        progress(f"evaluation loss {result.eval_loss:.4f} on {len(eval_items)} held-out examples")
    model.eval()
    return result
