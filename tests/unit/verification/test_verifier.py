"""The verifier in-process on the tiny model: the tiny model itself, and verdicts on answers built
with the same generation code the server runs (honest, other precisions, broken answers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from quasar.inference.encoding import encode_logits
from quasar.inference.model import LoadedModel, load_model
from quasar.models.tiny import make_tiny_model
from quasar.verification.calibrate import (
    clone_model,
    default_scenarios,
    misclassified,
    run_calibration,
    serving,
    suggest_thresholds,
)
from quasar.verification.verifier import ChallengeSpec, MinerAnswer, Verifier

SPEC = ChallengeSpec(prompt_tokens=16, max_new_tokens=16, checked_positions=4)


def _hashes(path: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())}


def test_tiny_model_is_deterministic_per_seed(tmp_path: Path, tiny_path: Path, tiny: LoadedModel) -> None:
    again = make_tiny_model(tmp_path / "again", 0)
    other = make_tiny_model(tmp_path / "other", 1)
    assert _hashes(again) == _hashes(tiny_path)
    assert _hashes(other)["model.safetensors"] != _hashes(tiny_path)["model.safetensors"]
    assert _hashes(other)["tokenizer.json"] == _hashes(tiny_path)["tokenizer.json"]  # same vocabulary
    assert tiny.model.config.model_type == "qwen2" and tiny.vocab_size % 64 == 0
    text = "The validator draws a seed."
    assert tiny.tokenizer.decode(tiny.tokenizer(text)["input_ids"]) == text
    assert load_model(str(again), "cpu", "float32").weights_sha256 == tiny.weights_sha256


def test_honest_answers_pass_in_their_declared_dtype(tiny: LoadedModel) -> None:
    verifier = Verifier(tiny, spec=SPEC)
    challenge = verifier.challenge("unit-honest")
    fp32 = serving(clone_model(tiny.model, torch.float32))(challenge)
    bf16 = serving(clone_model(tiny.model, torch.bfloat16))(challenge)
    assert verifier.check(challenge, fp32, declared_dtype="float32", elapsed_s=0.5).passed
    assert verifier.check(challenge, bf16, declared_dtype="bfloat16").passed
    # bf16 compute while claiming float32 lands outside the float32 bounds
    assert not verifier.check(challenge, bf16, declared_dtype="float32").passed


def test_broken_answers_fail_with_their_reason(tiny: LoadedModel) -> None:
    verifier = Verifier(tiny, spec=SPEC)
    ch = verifier.challenge("unit-broken")
    good = serving(clone_model(tiny.model, torch.float32))(ch)
    first = str(ch.logits_positions[0])

    def reason(answer: MinerAnswer, dtype: str = "float32") -> str:
        return verifier.check(ch, answer, declared_dtype=dtype).reason

    assert reason(good) == "ok"
    assert reason(good, "int4") == "unsupported_dtype"
    assert reason(MinerAnswer(good.output_ids[:-3], good.logits)) == "wrong_length"
    assert reason(MinerAnswer(good.output_ids + [5], good.logits)) == "wrong_length"
    assert reason(MinerAnswer([tiny.vocab_size] + good.output_ids[1:], good.logits)) == "bad_token_ids"
    missing = {k: v for k, v in good.logits.items() if k != first}
    assert reason(MinerAnswer(good.output_ids, missing)) == "missing_logits"
    nan = np.full(tiny.vocab_size, np.nan, dtype=np.float32)
    assert reason(MinerAnswer(good.output_ids, {**good.logits, first: encode_logits(nan)})) == "bad_logits"
    assert reason(MinerAnswer(good.output_ids, {**good.logits, first: "AAAA"})) == "bad_logits"


def test_extra_raw_gates_apply_only_when_set(tiny: LoadedModel) -> None:
    strict = Verifier(tiny, spec=SPEC, max_abs_diff_max=1e-9)
    ch = strict.challenge("unit-gates")
    answer = serving(clone_model(tiny.model, torch.float32))(ch)
    assert strict.check(ch, answer, declared_dtype="float32").reason == "max_abs_diff_above_threshold"
    assert Verifier(tiny, spec=SPEC, raw_cosine_min=0.5).check(ch, answer, declared_dtype="float32").passed


def test_calibration_separates_honest_from_dishonest(tiny: LoadedModel) -> None:
    wanted = {"same model fp32, batch 4", "other seed, fp32", "noise 1%, fp32", "shifted positions, fp32"}
    scenarios = [s for s in default_scenarios(tiny, declared_dtypes=("float32",)) if s.name in wanted]
    outcomes = run_calibration(tiny, scenarios, challenges=2, spec=SPEC)
    assert len(outcomes) == 4 and not misclassified(outcomes)
    suggested = suggest_thresholds(outcomes)
    assert set(suggested) == {"float32"} and suggested["float32"].min_centred_cosine < 1.0
