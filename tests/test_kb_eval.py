"""Retrieval evaluation: scoring rules, the query-set format, and `shifu kb eval` on the sample KB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kb.errors import KBError
from kb.evaluate import LabelledQuery, Score, Target, first_match, load_queries
from kb.types import Passage

QUERIES = Path(__file__).resolve().parent / "data" / "retrieval_queries.jsonl"


def _p(source: str, section: str) -> Passage:
    return Passage(id=section, source=source, section=section, text="")


def test_a_passage_matches_its_section_or_a_subsection() -> None:
    query = LabelledQuery("q", "A03", "en", "code", (Target("cv200.md", "Manual > Alarm reference"),))
    ranked = [_p("other.md", "Manual > Alarm reference"), _p("cv200.md", "Manual > Specs"),
              _p("cv200.md", "Manual > Alarm reference > A03 Belt slip")]
    assert first_match(query, ranked) == 3
    assert first_match(query, ranked[:2]) is None


def test_recall_and_mrr() -> None:
    score = Score()
    for rank in (1, 2, None, 4):
        score.add(rank)
    assert score.recall == 0.75
    assert score.mrr == pytest.approx((1 + 0.5 + 0.25) / 4)


def test_bad_query_set_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "query": "A01", "lang": "en", "expected_source": "x.md", "expected_section": ""}\n'
                    '{"id": "b", "query": "", "lang": "en", "expected_source": "x.md", "expected_section": "S"}\n')
    with pytest.raises(KBError, match=r"q\.jsonl line 2: missing or empty query"):
        load_queries(path)


def test_kb_eval_reports_every_mode_and_language_and_hybrid_reaches_target(kb_home: Path) -> None:
    from appliance.cli.main import cli

    labelled = load_queries(QUERIES)
    assert len(labelled) >= 80 and {q.lang for q in labelled} == {"en", "zh-TW"}
    result = CliRunner().invoke(cli, ["kb", "eval", str(QUERIES), "--json", "-k", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["k"] == 5 and report["queries"] == len(labelled)
    assert set(report["modes"]) == {"fts", "dense", "hybrid"}
    for mode in report["modes"].values():
        assert set(mode["by_lang"]) == {"en", "zh-TW"}
        assert mode["overall"]["n"] == len(labelled)
        assert 0.0 <= mode["overall"]["mrr"] <= mode["overall"]["recall"] <= 1.0
    hybrid = report["modes"]["hybrid"]
    for lang, score in hybrid["by_lang"].items():
        assert score["recall"] >= 0.9, (lang, score, hybrid["misses"])


def test_kb_eval_prints_a_table(kb_home: Path) -> None:
    from appliance.cli.main import cli

    result = CliRunner().invoke(cli, ["kb", "eval", str(QUERIES), "--mode", "fts", "--fail-under", "0.0"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["mode", "lang", "n", "recall@5", "MRR"]
    assert [line.split()[:2] for line in lines[2:5]] == [["fts", "all"], ["fts", "en"], ["fts", "zh-TW"]]


def test_trigram_terms_are_chinese_runs_and_codes_only() -> None:
    from kb.search.terms import trigram_query, word_query

    assert trigram_query("spindle oil too hot") is None  # the word index answers Latin words
    assert trigram_query("主軸過熱 AL-1002 spindle") == '"al-1002" OR "主軸過熱"'
    assert word_query("spindle oil") == '"spindle" OR "oil"'
