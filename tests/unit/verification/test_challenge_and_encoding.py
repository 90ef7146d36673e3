"""Challenges are a pure function of the seed; logits survive the float16 wire encoding."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from quasar.inference.encoding import FLOAT16_MAX, LogitsDecodeError, decode_logits, encode_logits
from quasar.verification.challenge import make_challenge

ALLOWED = list(range(2, 802))


def _make(seed: str, **sizes: int):
    args = {"prompt_tokens": 32, "max_new_tokens": 32, "checked_positions": 8} | sizes
    return make_challenge(seed, ALLOWED, **args)


def test_same_seed_same_challenge_and_other_seed_differs() -> None:
    a, b, c = _make("abc"), _make("abc"), _make("abd")
    assert a == b and a.input_ids != c.input_ids
    # Pinned values: the draw must never change between releases (results are re-checked from seeds).
    assert a.input_ids[:4] == [800, 337, 474, 624]
    assert a.logits_positions == [8, 13, 15, 16, 19, 22, 26, 29] and a.seed == "abc"


def test_challenge_shape() -> None:
    ch = _make("s", checked_positions=8)
    assert len(ch.input_ids) == 32 and set(ch.input_ids) <= set(ALLOWED)
    assert ch.logits_positions == sorted(set(ch.logits_positions))
    assert len(ch.logits_positions) == 8 and all(0 <= p < 32 for p in ch.logits_positions)
    assert _make("s", max_new_tokens=4, checked_positions=10).logits_positions == [0, 1, 2, 3]
    body = ch.request_body()
    assert body["stop_at_eos"] is False and body["input_ids"] == ch.input_ids


def test_positions_cover_the_range_over_many_seeds() -> None:
    seen = {p for i in range(200) for p in _make(f"x{i}", checked_positions=2).logits_positions}
    assert seen == set(range(32))


def test_bad_challenge_sizes() -> None:
    with pytest.raises(ValueError):
        make_challenge("s", [], prompt_tokens=4, max_new_tokens=4, checked_positions=1)
    with pytest.raises(ValueError):
        make_challenge("s", ALLOWED, prompt_tokens=0, max_new_tokens=4, checked_positions=1)


def test_encoding_round_trip_and_format() -> None:
    row = np.linspace(-30, 30, 1000, dtype=np.float32)
    text = encode_logits(row)
    raw = base64.b64decode(text)
    assert len(raw) == 2000
    assert np.frombuffer(raw, "<f2")[0] == np.float16(-30.0)  # little-endian float16, id order
    back = decode_logits(text, 1000)
    assert back.dtype == np.float32 and np.allclose(back, row, rtol=2**-11, atol=0)


def test_encoding_clamps_to_the_float16_range() -> None:
    back = decode_logits(encode_logits([1e6, -1e6, 1.0]), 3)
    assert list(back) == [FLOAT16_MAX, -FLOAT16_MAX, 1.0]


@pytest.mark.parametrize("text", ["not base64!!", base64.b64encode(b"\x00" * 6).decode()])
def test_decoding_refuses_bad_rows(text: str) -> None:
    with pytest.raises(LogitsDecodeError):
        decode_logits(text, 4)
