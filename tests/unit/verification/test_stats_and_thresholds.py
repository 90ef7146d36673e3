"""The comparison statistics and the thresholds file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from quasar.verification.stats import compare_logits, token_check, token_gaps
from quasar.verification.thresholds import DEFAULT_THRESHOLDS, ThresholdsFileError, load_thresholds


def test_raw_cosine_is_inflated_by_a_shared_offset_centred_is_not() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 500, generator=g) + 20.0  # two unrelated models sharing a large offset
    b = torch.randn(4, 500, generator=g) + 20.0
    stats = compare_logits(a, b)
    assert stats.raw_cosine_min > 0.99
    assert abs(stats.centred_cosine_mean) < 0.2 and stats.topk_agreement_mean < 0.3


def test_identical_and_offset_logits_agree_fully() -> None:
    a = torch.randn(3, 300)
    stats = compare_logits(a + 5.0, a)  # softmax ignores a constant offset
    assert stats.centred_cosine_min == pytest.approx(1.0)
    assert stats.kl_max == pytest.approx(0.0, abs=1e-9)
    assert stats.topk_agreement_min == 1.0 and stats.max_abs_diff == pytest.approx(5.0)


def test_token_gaps_and_near_ties() -> None:
    ref = torch.tensor([[0.0, 1.0, 0.95], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    sent = [2, 0, 1]  # a near tie (gap 0.05), the argmax, a clear mismatch (gap 3)
    assert token_gaps(ref, sent).tolist() == pytest.approx([0.05, 0.0, 3.0])
    check = token_check(ref, sent, gap_tolerance=0.1)
    assert (check.exact, check.near_ties, check.mismatches, check.first_mismatch) == (1, 1, 1, 2)


def test_thresholds_file_overrides_per_field(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"thresholds": {"bfloat16": {"max_kl": 0.5}, "int8": {"max_kl": 1.0}}}))
    table = load_thresholds(path)
    assert table["bfloat16"].max_kl == 0.5
    assert table["bfloat16"].min_centred_cosine == DEFAULT_THRESHOLDS["bfloat16"].min_centred_cosine
    assert table["int8"].max_kl == 1.0 and load_thresholds(None) == DEFAULT_THRESHOLDS


@pytest.mark.parametrize("content", ["{", '{"bfloat16": {"no_such_field": 1}}', "[1]"])
def test_bad_thresholds_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ThresholdsFileError):
        load_thresholds(path)


def test_float32_bounds_are_stricter_than_bfloat16() -> None:
    f32, bf16 = DEFAULT_THRESHOLDS["float32"], DEFAULT_THRESHOLDS["bfloat16"]
    assert f32.min_centred_cosine > bf16.min_centred_cosine and f32.max_kl < bf16.max_kl
