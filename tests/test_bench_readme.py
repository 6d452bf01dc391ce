"""The README's performance table is what bench/readme_table.py renders from the committed result."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "bench" / "results" / "perf.json"
CONTRACT = ["commit", "date", "cpu_model", "cpu_cores", "ram_gb", "ttft_ratio_vs_raw", "ttft_samples",
            "decode_ratio_vs_raw", "spec_decode_identical", "spec_decode_speedup",
            "decode_fraction_of_bandwidth_limit", "operator_ttft_under_alarm_load_ratio",
            "peer_first_content_ratio", "peer_full_answer_ratio", "shifu_step_recall", "peer_step_recall",
            "shifu_invented_unknown", "peer_invented_unknown"]


def test_readme_table_matches_the_committed_bench_result() -> None:
    from bench.readme_table import readme_block, render

    result = json.loads(RESULT.read_text(encoding="utf-8"))
    block = readme_block((REPO / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md lost its generated performance table"
    assert block == render(result), "README table differs from bench/results/perf.json: run python -m bench.readme_table --write"


def test_committed_result_is_traceable_and_fair() -> None:
    result = json.loads(RESULT.read_text(encoding="utf-8"))
    missing = [key for key in CONTRACT if key not in result]
    assert not missing, f"bench/results/perf.json lacks {missing}"
    assert result["ttft_samples"] >= 20 and result["operator_load_samples"] >= 10
    for key in ("ttft_ratio_vs_raw", "decode_ratio_vs_raw", "engine_ttft_ms", "raw_ttft_ms"):
        assert f"{key}_iqr" in result, key
