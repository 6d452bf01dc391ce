"""Many queries at once (serve threadpool, alarm worker, kiosk): each answer keeps its own findings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from appliance.engine import Query

QUERIES = [("A03", "en"), ("E-203", "zh-TW"), ("belt squeals when starting", "en"), ("皮帶打滑", "zh-TW"),
           ("AL-1003", "en"), ("ZQ-9999", "en"), ("mould temperature too high", "en"), ("射出不足 短射", "zh-TW")]


def _fingerprint(passages) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    return [(p.id, p.n, p.evidence) for p in passages]


def test_parallel_queries_keep_their_own_passages_and_evidence(engine) -> None:
    kb = engine.kb()
    jobs = [(text, lang, mode) for text, lang in QUERIES for mode in ("engine", "fts", "dense")]

    def run(job: tuple[str, str, str]) -> tuple[object, ...]:
        text, lang, mode = job
        if mode == "engine":
            answer = engine.answer(Query(text, lang=lang), use_model=False)
            return (answer.refused, answer.normalized, _fingerprint(answer.passages))
        return (None, None, _fingerprint(kb.search(text, 5, mode=mode).passages))

    expected = {job: run(job) for job in jobs}
    assert any(fp[2] for fp in expected.values())
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _round in range(3):
            results = list(pool.map(run, jobs * 2))
            for job, result in zip(jobs * 2, results, strict=True):
                assert result == expected[job], job
