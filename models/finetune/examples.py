"""Chat examples -> token ids with labels on the assistant's answer only.

The prompt is tokenized exactly as llama.cpp tokenizes it at inference (ChatML from
`models.prompt.chatml`, ending in `<|im_start|>assistant\\n`), and the answer separately,
followed by `<|im_end|>`: the model learns to produce the answer from that prompt and to stop.
Prompt tokens get the label -100 and add nothing to the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models import prompt

IGNORE = -100
Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]

    @property
    def answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def tokenize_chat(chat: list[dict[str, str]], encode: Encode) -> Tokenized:
    """One training example; the last message must be the assistant's answer."""
    if not chat or chat[-1]["role"] != "assistant":
        raise ValueError("a training example ends with the assistant's answer")
    prompt_ids = encode(prompt.chatml(chat[:-1], add_generation_prompt=True))
    answer_ids = encode(chat[-1]["content"] + prompt.STOP[0])
    return Tokenized(prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids)


def tokenize_all(chats: list[list[dict[str, str]]], encode: Encode, seq_len: int) -> tuple[list[Tokenized], int]:
    """Tokenized examples that fit `seq_len`, and how many did not fit (they are dropped, not cut)."""
    kept, too_long = [], 0
    for chat in chats:
        item = tokenize_chat(chat, encode)
        if len(item.input_ids) > seq_len:
            too_long += 1
        else:
            kept.append(item)
    return kept, too_long
