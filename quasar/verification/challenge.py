"""Challenges: the prompt ids and checked positions a validator sends, drawn from its seed.

The draw uses sha256 in counter mode, not a library RNG, so a seed gives the same challenge on
every machine and every numpy/torch release — a result can be re-checked from its seed alone.
Prompts are random ordinary tokens: no miner can precompute answers for them, and a server that
only memorised common text gains nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Challenge:
    """One verification request: what to send and which generated positions to compare."""

    seed: str  # hex; recorded with the result so anyone can rebuild the challenge
    input_ids: list[int]
    max_new_tokens: int
    logits_positions: list[int] = field(default_factory=list)

    def request_body(self) -> dict[str, object]:
        """The `POST /inference` body (HTTP contract v1). ``stop_at_eos`` is an added field: a
        full-length answer covers every checked position."""
        return {
            "input_ids": list(self.input_ids),
            "max_new_tokens": self.max_new_tokens,
            "logits_positions": list(self.logits_positions),
            "stop_at_eos": False,
        }


def new_seed() -> str:
    """A fresh unpredictable seed (128 bits, hex)."""
    return secrets.token_hex(16)


def _stream(seed: str, label: str) -> Iterator[int]:
    counter = 0
    while True:
        block = hashlib.sha256(f"quasar-challenge-v1|{label}|{seed}|{counter}".encode()).digest()
        for offset in range(0, 32, 8):
            yield int.from_bytes(block[offset : offset + 8], "little")
        counter += 1


def _uniform_below(stream: Iterator[int], n: int) -> int:
    # Rejection sampling: plain modulo would favour small values when n does not divide 2**64.
    limit = (1 << 64) - ((1 << 64) % n)
    while True:
        value = next(stream)
        if value < limit:
            return value % n


def make_challenge(
    seed: str,
    allowed_ids: Sequence[int],
    *,
    prompt_tokens: int,
    max_new_tokens: int,
    checked_positions: int,
) -> Challenge:
    """The challenge for ``seed``: ``prompt_tokens`` ids drawn from ``allowed_ids`` (with
    replacement) and ``checked_positions`` distinct positions in ``[0, max_new_tokens)``, sorted."""
    if not allowed_ids:
        raise ValueError("no token ids to draw prompts from; the reference tokenizer looks empty")
    if prompt_tokens < 1 or max_new_tokens < 1:
        raise ValueError("a challenge needs at least one prompt token and one new token")
    ids = _stream(seed, "prompt")
    prompt = [int(allowed_ids[_uniform_below(ids, len(allowed_ids))]) for _ in range(prompt_tokens)]
    pool = list(range(max_new_tokens))
    picks = _stream(seed, "positions")
    # Partial Fisher-Yates: the first k entries become a uniform sample without replacement.
    k = min(checked_positions, max_new_tokens)
    for i in range(k):
        j = i + _uniform_below(picks, len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return Challenge(
        seed=seed, input_ids=prompt, max_new_tokens=max_new_tokens, logits_positions=sorted(pool[:k])
    )
