"""Hybrid retrieval: FTS5 (trigram + words/CJK bigrams) and dense vectors, fused by RRF."""
