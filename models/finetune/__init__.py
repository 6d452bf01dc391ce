"""Fine-tuning LoRA adapters (engineer side; the `finetune` extra). The only place training libraries load.

`finetune(recipe, data_dir, out)` reads `train.jsonl`/`eval.jsonl` written by `shifu data build`,
loads the base through the recipe's backend (`peft` here on the CPU, `unsloth` on a CUDA GPU),
trains with loss on the answer tokens only, and writes into `out`:

- `adapter_config.json`, `adapter_model.safetensors`: the PEFT adapter (`shifu model export` turns it into GGUF);
- `shifu_adapter.json`: architecture, heads, base GGUF and its sha256, losses, time (see models.adapter_meta);
- `loss.csv` and `loss.png`: the loss per optimizer step, and the evaluation loss when there is held-out data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kb.errors import ModelError
from models import prompt
from models.adapter_meta import AdapterMeta
from models.dataset import read_jsonl
from models.finetune.backend import Progress
from models.finetune.recipe import Recipe


def finetune(recipe: Recipe, data_dir: Path, out: Path, progress: Progress = print) -> AdapterMeta:
    """Train an adapter for the recipe on the dataset folder; return what was written about it."""
    from models.finetune.examples import tokenize_all
    from models.finetune.loop import train
    from models.finetune.plot import loss_curve

    train_file = data_dir / "train.jsonl"
    if not train_file.exists():
        raise ModelError(f"{data_dir} holds no train.jsonl; build it with `shifu data build`")
    _check_prompt(data_dir)
    chats = read_jsonl(train_file)
    eval_chats = read_jsonl(data_dir / "eval.jsonl") if (data_dir / "eval.jsonl").exists() else []
    if recipe.backend == "unsloth":
        from models.finetune import unsloth_backend as backend
    else:
        from models.finetune import peft_backend as backend  # type: ignore[no-redef]
    loaded = backend.load(recipe, progress)
    items, too_long = tokenize_all(chats, loaded.encode, recipe.train.seq_len)
    held, _ = tokenize_all(eval_chats[: recipe.train.eval_examples], loaded.encode, recipe.train.seq_len)
    if too_long:
        progress(f"warning: {too_long} of {len(chats)} examples are longer than seq_len {recipe.train.seq_len} "
                 "and were left out; raise [train] seq_len to keep them")
    if not items:
        raise ModelError(f"no training example fits seq_len {recipe.train.seq_len}; raise it in the recipe")
    progress(f"{len(items)} training examples ({sum(len(i.input_ids) for i in items)} tokens, "
             f"{sum(i.answer_tokens for i in items)} of them in answers), {len(held)} held out")
    result = train(loaded.model, items, recipe.train, pad_id=loaded.pad_id, device=loaded.device,
                   progress=progress, eval_items=held)
    out.mkdir(parents=True, exist_ok=True)
    backend.save(loaded, out)
    with open(out / "loss.csv", "w", encoding="utf-8") as handle:
        handle.write("step,loss\n" + "".join(f"{i},{loss:.6f}\n" for i, loss in enumerate(result.losses, 1)))
    loss_curve(result.losses, out / "loss.png", title=f"{recipe.name}: {len(items)} examples, {result.steps} steps",
               eval_loss=result.eval_loss)
    base = recipe.base_gguf()
    base_sha = recipe.base.gguf_sha256
    if base is not None and base.exists() and not base_sha:
        from models.registry import file_sha256

        base_sha = file_sha256(base)
    meta = AdapterMeta(
        architecture=loaded.architecture, n_head=loaded.n_head, n_head_kv=loaded.n_head_kv, n_layer=loaded.n_layer,
        base_gguf=str(base) if base is not None and base.exists() else "", base_sha256=base_sha,
        n_ctx=loaded.n_ctx, recipe=recipe.name, backend=recipe.backend, steps=result.steps, examples=len(items),
        final_loss=round(sum(result.losses[-5:]) / len(result.losses[-5:]), 5), eval_loss=result.eval_loss,
        train_seconds=result.seconds, system_prompt_sha256=_prompt_sha(),
        extra={"rank": recipe.lora.rank, "alpha": recipe.lora.alpha, "target_modules": recipe.lora.target_modules,
               "learning_rate": recipe.train.learning_rate, "seq_len": recipe.train.seq_len,
               "first_loss": result.losses[0], "recipe_file": recipe.source, "export_dtype": recipe.export.dtype},
    )
    meta.write(out)
    progress(f"adapter written to {out} in {result.seconds}s (loss {result.losses[0]:.3f} -> {meta.final_loss:.3f})")
    return meta


def _prompt_sha(mode: str = "free") -> str:
    return hashlib.sha256(prompt.system_prompt(mode).encode("utf-8")).hexdigest()


def _check_prompt(data_dir: Path) -> None:
    """A dataset built with another system prompt would teach a layout the engine no longer uses."""
    summary = data_dir / "summary.json"
    if not summary.exists():
        return
    data = json.loads(summary.read_text(encoding="utf-8"))
    recorded = data.get("system_prompt_sha256", "")
    if recorded and recorded != _prompt_sha(str(data.get("answer_mode", "free"))):
        raise ModelError(f"{data_dir} was built with another system prompt; rebuild it with `shifu data build`")
