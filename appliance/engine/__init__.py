"""The headless engine: a query in, a stream of typed events out."""

from appliance.engine.engine import Engine
from appliance.engine.types import (
    Answer,
    CodeFound,
    Done,
    Event,
    Failed,
    HistoryFound,
    Partial,
    PassagesFound,
    Query,
    Token,
)

__all__ = [
    "Answer", "CodeFound", "Done", "Engine", "Event", "Failed", "HistoryFound", "Partial", "PassagesFound",
    "Query", "Token",
]
