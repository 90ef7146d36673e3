"""The trusted checker's judgement of saved outputs: plain tensors only, sizes bounded, values checked."""

from __future__ import annotations

from pathlib import Path

import torch

from quasar.bench.cases import CaseSpec, make_inputs, reference_outputs
from quasar.evaluation.checker import check_saved
from quasar.reasons import REASON_UNLOADABLE

SPEC = CaseSpec("tiny", 1, 96, 2, 8, 8, torch.float32, output_final_state=True)
CPU = torch.device("cpu")


class Sneaky(torch.Tensor):
    """A subclass a submission could return; unpickling it would run the submission's code."""


def _honest(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    o, final = reference_outputs(SPEC, make_inputs(SPEC, seed, CPU))
    assert final is not None
    return o.to(SPEC.dtype), final


def test_plain_correct_outputs_pass(tmp_path: Path) -> None:
    o, final = _honest(7)
    torch.save({"o": o, "final": final}, tmp_path / "case.pt")
    result = check_saved(SPEC, 7, tmp_path / "case.pt", CPU, "tiny")
    assert result.passed and result.rel_error is not None and result.rel_error < 1e-6


def test_outputs_of_other_inputs_fail(tmp_path: Path) -> None:
    o, final = _honest(8)
    torch.save({"o": o, "final": final}, tmp_path / "case.pt")
    result = check_saved(SPEC, 7, tmp_path / "case.pt", CPU, "tiny")
    assert not result.passed and result.reason == "incorrect_output"


def test_a_reference_computed_ahead_is_the_one_judged_against(tmp_path: Path) -> None:
    o, final = _honest(7)
    torch.save({"o": o, "final": final}, tmp_path / "case.pt")
    ahead = reference_outputs(SPEC, make_inputs(SPEC, 7, CPU))
    assert check_saved(SPEC, 7, tmp_path / "case.pt", CPU, "tiny", ahead).passed
    # A reference of other inputs handed in fails the same output: the prepared one is what counts.
    other = reference_outputs(SPEC, make_inputs(SPEC, 8, CPU))
    result = check_saved(SPEC, 7, tmp_path / "case.pt", CPU, "tiny", other)
    assert not result.passed and result.reason == "incorrect_output"


def test_tensor_subclass_is_refused_by_weights_only_load(tmp_path: Path) -> None:
    o, final = _honest(7)
    torch.save({"o": o.as_subclass(Sneaky), "final": final}, tmp_path / "case.pt")
    result = check_saved(SPEC, 7, tmp_path / "case.pt", CPU, "tiny")
    assert not result.passed and result.reason == REASON_UNLOADABLE


def test_arbitrary_pickles_are_refused(tmp_path: Path) -> None:
    import pickle

    class Boom:
        def __reduce__(self):  # would run a command when unpickled without weights_only
            return (print, ("PWNED",))

    (tmp_path / "case.pt").write_bytes(pickle.dumps({"o": Boom()}))
    result = check_saved(SPEC, 7, tmp_path / "case.pt", CPU, "tiny")
    assert not result.passed and result.reason == REASON_UNLOADABLE


def test_missing_and_oversized_files_are_refused(tmp_path: Path) -> None:
    assert check_saved(SPEC, 7, tmp_path / "none.pt", CPU, "tiny").reason == REASON_UNLOADABLE
    torch.save({"o": torch.zeros(4 << 20)}, tmp_path / "big.pt")
    result = check_saved(SPEC, 7, tmp_path / "big.pt", CPU, "tiny")
    assert result.reason == REASON_UNLOADABLE and "larger" in (result.detail or "")


def test_nan_and_wrong_dtype_fail(tmp_path: Path) -> None:
    o, final = _honest(7)
    o[0, 0, 0, 0] = float("nan")
    torch.save({"o": o, "final": final}, tmp_path / "nan.pt")
    assert check_saved(SPEC, 7, tmp_path / "nan.pt", CPU, "tiny").reason == "nan_or_inf"
    o, final = _honest(7)
    torch.save({"o": o.half(), "final": final}, tmp_path / "dtype.pt")
    assert check_saved(SPEC, 7, tmp_path / "dtype.pt", CPU, "tiny").reason == "wrong_dtype"
