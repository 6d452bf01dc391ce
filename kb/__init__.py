"""Shifu knowledge base: sources in, versioned SQLite + vector index out, hybrid search.

`kb` is the lowest layer of Shifu: it imports neither `appliance` nor `models`.
"""
