"""`python -m bench [--quick] [--json FILE] [--gpu]`: the performance suite (see bench/perf.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kb.embed import offline


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Shifu performance benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 10 minutes on 2 cores)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    parser.add_argument("--gpu", action="store_true", help="offload every layer to CUDA (appliance only)")
    args = parser.parse_args()
    offline()
    from bench.perf import run

    run(args.quick, args.gpu, args.json)


if __name__ == "__main__":
    main()
