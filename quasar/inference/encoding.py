"""The wire encoding of logits in `POST /inference` answers (HTTP contract v1, DESIGN §4).

One position's logits are the full vocabulary row, as IEEE-754 half precision (float16),
little-endian, concatenated in token-id order, then base64 (standard alphabet, with padding).
A row of V logits is 2·V bytes before base64, about 2.7·V characters after. Values beyond the
float16 range are clamped to ±65504 so the row stays finite; NaN is sent as NaN (and rejected by
the verifier).

float16 keeps ~3 decimal digits: rounding costs a relative error of at most 2^-11 per logit, far
below the differences between models, and a quarter of the size of the float32 row.

Needs numpy only (the verifier and the GPU calibration script import it without torch's extras).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

FLOAT16_MAX = 65504.0
WIRE_DTYPE = np.dtype("<f2")


class LogitsDecodeError(ValueError):
    """A logits string that is not base64 of exactly vocab_size little-endian float16 values."""


def encode_logits(row: Any) -> str:
    """Encode one position's logits (any 1-D array-like or CPU tensor of floats) for the wire."""
    values = np.asarray(row, dtype=np.float32).reshape(-1)
    values = np.clip(values, -FLOAT16_MAX, FLOAT16_MAX)  # NaN passes through clip unchanged
    return base64.b64encode(values.astype(WIRE_DTYPE).tobytes()).decode("ascii")


def decode_logits(text: str, vocab_size: int) -> np.ndarray:
    """Decode one position's logits to a float32 array of length ``vocab_size``."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise LogitsDecodeError(f"logits are not valid base64: {exc}") from exc
    if len(raw) != 2 * vocab_size:
        raise LogitsDecodeError(
            f"logits hold {len(raw) // 2} float16 values; the vocabulary has {vocab_size}"
        )
    return np.frombuffer(raw, dtype=WIRE_DTYPE).astype(np.float32)
