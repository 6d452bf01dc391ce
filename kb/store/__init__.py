"""SQLite storage of a knowledge-base version (the record of truth)."""
