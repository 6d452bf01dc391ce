"""Resident memory of one generation with and without prompt-lookup decoding, each in a fresh process.

    .venv/bin/python -m bench.spec_memory plain|bounded|logits_all [--tokens K] [--n-ctx N]

`plain`: stock llama-cpp-python; `bounded`: Shifu's backend model (appliance.llm.llama_cpp.bounded_llama)
with prompt lookup, logits only for the verified rows; `logits_all`: llama-cpp-python's own draft path,
which needs `logits_all=True` (n_ctx x vocabulary floats). Prints one JSON line with VmHWM and VmRSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _peak() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            out[line.split(":")[0]] = int(line.split()[1]) // 1024
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["plain", "bounded", "logits_all"])
    parser.add_argument("--tokens", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    args = parser.parse_args(argv)
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    from appliance.llm.llama_cpp import bounded_llama, use_prompt_lookup
    from models.registry import embedded_entry

    path = str(embedded_entry().path)
    common: dict[str, Any] = {"model_path": path, "n_ctx": args.n_ctx, "n_threads": 1, "seed": 1234, "verbose": False}
    if args.mode == "plain":
        llm = Llama(**common)
    elif args.mode == "logits_all":
        llm = Llama(**common, logits_all=True, draft_model=LlamaPromptLookupDecoding(num_pred_tokens=args.tokens))
    else:
        llm = bounded_llama()(**common)
        use_prompt_lookup(llm, args.tokens)
    manual = sorted((REPO / "kb" / "sample" / "manuals").glob("*.md"))[0].read_text(encoding="utf-8")
    text = ("<|im_start|>user\nRepeat the first steps of this manual.\n" + manual[:2400]
            + "<|im_end|>\n<|im_start|>assistant\n")
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    llm.create_completion(tokens, max_tokens=48, temperature=0.0)
    print(json.dumps({"mode": args.mode, "prompt_tokens": len(tokens), "n_ctx": args.n_ctx, **_peak()}))
    return 0


def measure(mode: str, tokens: int = 2, n_ctx: int = 4096) -> dict[str, Any]:
    """Run one mode in a fresh interpreter and return its JSON line."""
    done = subprocess.run([sys.executable, "-m", "bench.spec_memory", mode, "--tokens", str(tokens),
                           "--n-ctx", str(n_ctx)], cwd=REPO, capture_output=True, text=True, timeout=900, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    raise SystemExit(main())
