"""Is a base GGUF what the registry says, and does an adapter fit its base? Checked from the headers.

Used when model files are registered from a bundle, at `shifu model activate`, and by the loader
on the very descriptors whose hash it checked, so llama.cpp is never handed a pair that does not
fit: architecture, vocabulary size, context length, the base sha256 the adapter recorded at
export, and every LoRA tensor against the base tensor it modifies (llama.cpp's own rule:
A's ne[0] = W's ne[0], B's ne[1] = W's ne[1], A's ne[1] = B's ne[0], the rank).
"""

from __future__ import annotations

from kb.errors import ModelError
from models.gguf_header import GGUFHeader, read_header_file
from models.registry import ModelEntry

VOCAB_TENSORS = ("token_embd.weight", "output.weight")


def base_problems(entry: ModelEntry, header: GGUFHeader) -> list[str]:
    """What is wrong with a base model file for its registry entry (empty: nothing)."""
    problems: list[str] = []
    if header.file_type != "model":
        problems.append(f"it is a GGUF {header.file_type}, not a model")
    if not header.architecture:
        problems.append("it names no architecture (general.architecture)")
    elif entry.architecture and entry.architecture != header.architecture:
        problems.append(f"its architecture is {header.architecture}, the registry says {entry.architecture}")
    trained_ctx = header.arch_value("context_length")
    if trained_ctx is not None and entry.n_ctx > int(trained_ctx):
        problems.append(f"the registry's context of {entry.n_ctx} tokens exceeds the model's {trained_ctx}")
    vocab = header.vocab_size
    declared = header.arch_value("vocab_size")
    if vocab is not None and declared is not None and int(declared) != vocab:
        problems.append(f"its tokenizer holds {vocab} tokens but it declares a vocabulary of {declared}")
    embd = header.tensors.get("token_embd.weight")
    if vocab is not None and embd is not None and len(embd) >= 2 and embd[1] != vocab:
        problems.append(f"its embedding table has {embd[1]} rows for a vocabulary of {vocab}")
    return problems


def adapter_problems(adapter: ModelEntry, header: GGUFHeader, base: ModelEntry, base_header: GGUFHeader) -> list[str]:
    """What stops `adapter` from running on `base` (empty: it fits)."""
    problems: list[str] = []
    if header.file_type != "adapter" or str(header.metadata.get("adapter.type", "")) != "lora":
        problems.append("it is not a GGUF LoRA adapter (general.type = adapter, adapter.type = lora)")
    if header.architecture != base_header.architecture:
        problems.append(f"it is for a {header.architecture or 'unnamed'} model, base {base.id} is "
                        f"{base_header.architecture}")
    recorded = str(header.metadata.get("shifu.base_sha256", ""))
    if recorded and base.sha256 and recorded != base.sha256:
        problems.append(f"it was exported for base sha256 {recorded[:12]}, not {base.id} ({base.sha256[:12]})")
    if recorded and adapter.base_sha256 and recorded != adapter.base_sha256:
        problems.append(f"its file records base sha256 {recorded[:12]}, its registry entry {adapter.base_sha256[:12]}")
    trained_ctx = base_header.arch_value("context_length")
    if trained_ctx is not None and adapter.n_ctx > int(trained_ctx):
        problems.append(f"its context of {adapter.n_ctx} tokens exceeds base {base.id}'s {trained_ctx}")
    pairs = 0
    for name, ne_a in sorted(header.tensors.items()):
        if not name.endswith(".lora_a"):
            if not name.endswith(".lora_b"):
                problems.append(f"tensor {name} is not a LoRA A/B matrix")
            elif name[: -len(".lora_b")] + ".lora_a" not in header.tensors:
                problems.append(f"tensor {name} has no lora_a")
            continue
        target = name[: -len(".lora_a")]
        ne_b = header.tensors.get(target + ".lora_b")
        weight = base_header.tensors.get(target)
        if ne_b is None:
            problems.append(f"tensor {name} has no lora_b")
        elif weight is None:
            problems.append(f"it modifies {target}, which base {base.id} does not have (another size or layout)")
        elif len(ne_a) < 2 or len(ne_b) < 2 or len(weight) < 2:
            problems.append(f"tensor {target} is not a matrix")
        elif ne_a[0] != weight[0] or ne_b[1] != weight[1] or ne_a[1] != ne_b[0]:
            what = "vocabulary" if target in VOCAB_TENSORS else "shape"
            problems.append(f"its {what} does not fit: {target} is {list(weight)} in the base, the adapter's A is "
                            f"{list(ne_a)} and B {list(ne_b)}")
        else:
            pairs += 1
        if len(problems) > 8:
            break
    if not pairs and not problems:
        problems.append("it holds no LoRA tensors")
    return problems


def check_base(entry: ModelEntry, header: GGUFHeader | None = None) -> GGUFHeader:
    """Raise ModelError naming every problem of a base file; returns its header."""
    header = header or read_header_file(entry.path, f"model {entry.id}")
    problems = base_problems(entry, header)
    if problems:
        raise ModelError(f"model {entry.id} ({entry.path.name}) cannot be used: " + "; ".join(problems))
    return header


def check_pair(base: ModelEntry, adapter: ModelEntry | None, *, base_header: GGUFHeader | None = None,
               adapter_header: GGUFHeader | None = None) -> None:
    """Raise ModelError unless the base is sound and the adapter (if any) fits it."""
    base_header = check_base(base, base_header)
    if adapter is None:
        return
    header = adapter_header or read_header_file(adapter.path, f"adapter {adapter.id}")
    problems = adapter_problems(adapter, header, base, base_header)
    if problems:
        raise ModelError(f"adapter {adapter.id} does not fit base {base.id}: " + "; ".join(problems))
