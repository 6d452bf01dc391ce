"""Running processes follow a model switch (issue 16, item 4), between answers and never during one.

The switching logic (appliance.llm.following) is tested here with backends that only record
what happens to them: the question is when a pair is closed and loaded relative to the answers
holding it, which a real model cannot make observable. The real model, a real adapter bundle
and a real `shifu serve` are in test_model_follow_serve.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo
from appliance.llm.following import FollowingBackend
from kb.errors import ModelError


class Recorded(LLMBackend):
    """Says which pair it is; every load, close and stream goes into the shared log."""

    name = "recorded"

    def __init__(self, key: str, log: list[str], *, broken: bool = False) -> None:
        self.key, self.log, self.broken = key, log, broken

    def load(self) -> None:
        self.log.append(f"load {self.key}")
        if self.broken:
            raise ModelError(f"{self.key} cannot be loaded")

    def info(self) -> ModelInfo:
        return ModelInfo(backend="recorded", base_id=self.key)

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.log.append(f"stream {self.key}")
        yield "ready"

    def close(self) -> None:
        self.log.append(f"close {self.key}")


def following(registry: Path, log: list[str], broken: tuple[str, ...] = ()) -> FollowingBackend:
    def wanted() -> tuple[str, Callable[[], LLMBackend]]:
        key = registry.read_text()
        return key, lambda: Recorded(key, log, broken=key in broken)

    return FollowingBackend(wanted, watch=registry)


def waiting_or_done(backend: FollowingBackend, thread: threading.Thread) -> None:
    """Until `thread` either waits on the backend's condition or has finished (no fixed sleep)."""
    deadline = time.monotonic() + 30
    while thread.is_alive() and not backend._cond._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def switch_registry(registry: Path, key: str) -> None:
    tmp = registry.with_name("new")
    tmp.write_text(key)
    tmp.replace(registry)  # as save_registry does: a new inode


def test_a_switch_waits_for_the_answer_in_flight_then_loads_the_new_pair(tmp_path: Path) -> None:
    registry = tmp_path / "models.toml"
    registry.write_text("A")
    log: list[str] = []
    backend = following(registry, log)
    backend.load()
    second: list[str] = []

    def next_answer() -> None:
        with backend.hold() as pair:
            second.append(pair.info().base_id)
            list(pair.stream([], GenerateOptions()))

    with backend.hold() as pair:
        assert pair.info().base_id == "A"
        switch_registry(registry, "B")
        other = threading.Thread(target=next_answer)
        other.start()
        waiting_or_done(backend, other)
        assert other.is_alive() and "close A" not in log, f"the pair was switched during an answer: {log}"
        list(pair.stream([], GenerateOptions()))  # the answer in flight finishes on its own pair
    other.join(timeout=30)
    assert second == ["B"]
    assert log == ["load A", "stream A", "close A", "load B", "stream B", "stream B"]
    # (the second "stream B" is the switch's own health check, generated before B answers anyone)


def test_a_pair_that_fails_keeps_the_previous_one_until_the_registry_changes_again(tmp_path: Path) -> None:
    registry = tmp_path / "models.toml"
    registry.write_text("A")
    log: list[str] = []
    backend = following(registry, log, broken=("B",))
    backend.load()
    switch_registry(registry, "B")
    with backend.hold() as pair:
        assert pair.info().base_id == "A"
    assert "B cannot be loaded" in backend.switch_error
    with backend.hold() as pair:  # not retried for every answer
        assert pair.info().base_id == "A"
    assert log.count("load B") == 1
    assert log == ["load A", "close A", "load B", "close B", "load A"]
    switch_registry(registry, "C")
    with backend.hold() as pair:
        assert pair.info().base_id == "C"
    assert backend.switch_error == ""


def test_an_unchanged_registry_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tmp_path / "models.toml"
    registry.write_text("A")
    asked: list[int] = []
    log: list[str] = []

    def wanted() -> tuple[str, Callable[[], LLMBackend]]:
        asked.append(1)
        return "A", lambda: Recorded("A", log)

    backend = FollowingBackend(wanted, watch=registry)
    for _ in range(5):
        with backend.hold():
            pass
    assert len(asked) == 1
    switch_registry(registry, "A")
    with backend.hold():
        pass
    assert len(asked) == 2 and log == ["load A"]  # same pair: nothing reloaded
