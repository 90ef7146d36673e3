"""The validator's job runner: how evaluation reports and failures become results (blame where it belongs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quasar.config import Settings
from quasar.schemas import Job
from quasar.validator.posting import ResultSpool
from quasar.validator.worker import Device, JobRunner, devices_from_setting, result_from_report

JOB = Job.model_validate(
    {
        "job_id": 7, "submission_id": 3, "round_id": 1, "repo_url": "/tmp/repo", "commit_sha": "a" * 40,
        "inference_url": "http://127.0.0.1:9", "miner_hotkey": "5Fminer", "attempt": 1,
        "target_shape": {}, "lease_expires_at": "2030-01-01T00:00:00Z", "lease_seconds": 60, "win_margin": 0.01,
    }
)  # fmt: skip
PASSING = {
    "verdict": "pass", "reason": None, "median_ms": 10.0, "baseline_ms": 20.0, "speedup": 2.0,
    "max_rel_error": 1e-6, "peak_mem_mb": None, "kernel_tree_hash": "b" * 40, "log_tail": "x" * 100_000,
}  # fmt: skip


class Verdict:
    def __init__(self, verdict: str, reason: str) -> None:
        self.verdict, self.reason, self.metrics = verdict, reason, {"cosine": 0.99, "kl": float("nan")}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_a_passing_report_becomes_a_result_within_the_body_limit() -> None:
    result = result_from_report(PASSING)
    assert (result.verdict, result.reason, result.speedup, result.kernel_tree_hash) == (
        "pass",
        "ok",
        2.0,
        "b" * 40,
    )
    assert result.report is not None and "log_tail" not in result.report
    assert len(result.model_dump_json()) < 48 * 1024


def test_bad_numbers_and_reasons_are_cleaned_not_refused() -> None:
    result = result_from_report(
        {
            "verdict": "fail",
            "reason": "Not A Code!",
            "median_ms": 0.0,
            "speedup": float("inf"),
            "kernel_tree_hash": "zz",
        }
    )
    assert result.verdict == "fail" and result.reason == "validator_error"
    assert result.median_ms is None and result.speedup is None and result.kernel_tree_hash is None
    assert result_from_report({"verdict": "maybe"}).verdict == "error"


def test_the_validators_own_failure_is_an_error_never_a_fail() -> None:
    def broken(*_: Any) -> Any:
        raise OSError("disk full")

    result = JobRunner(settings(), Device("cpu"), evaluate=broken).run(JOB)
    assert result.verdict == "error" and "disk full" in (result.detail or "")


def test_logit_verification_joins_a_passing_result() -> None:
    runner = JobRunner(
        settings(enable_logit_verification=True), Device("cpu"),
        evaluate=lambda *_: dict(PASSING), verify=lambda url, hotkey: (Verdict("fail", "token_mismatch"), {}),
    )  # fmt: skip
    result = runner.run(JOB)
    assert result.verdict == "pass" and result.logit_check is not None
    assert (result.logit_check.verdict, result.logit_check.reason) == ("fail", "token_mismatch")
    assert result.logit_check.metrics == {"cosine": 0.99}


def test_logit_check_that_cannot_be_made_is_retried_then_an_error() -> None:
    calls = []

    def busy(url: str, hotkey: str | None) -> Any:
        calls.append(url)
        return Verdict("error", "server_busy"), {}

    runner = JobRunner(settings(), Device("cpu"), evaluate=lambda *_: dict(PASSING), verify=busy)
    result = runner.run(JOB)
    assert len(calls) == 2 and result.verdict == "error" and result.reason == "logit_check_error"


def test_no_inference_server_is_the_miners_fault() -> None:
    runner = JobRunner(
        settings(), Device("cpu"), evaluate=lambda *_: dict(PASSING), verify=lambda *_: None,
        inference_url_of=lambda job: None,
    )  # fmt: skip
    check = runner.run(JOB).logit_check
    assert check is not None and (check.verdict, check.reason) == ("fail", "unreachable")


def test_a_failed_kernel_skips_logit_verification() -> None:
    def never(*_: Any) -> Any:
        raise AssertionError("verification must not run for a failed kernel")

    runner = JobRunner(
        settings(), Device("cpu"), evaluate=lambda *_: {"verdict": "fail", "reason": "nan"}, verify=never
    )
    assert runner.run(JOB).verdict == "fail"


def test_devices() -> None:
    assert devices_from_setting("cpu") == [Device("cpu")]
    assert devices_from_setting("cuda:3") == [Device("cuda", 3)]
    assert str(Device("cuda", 1)) == "cuda:1"
    with pytest.raises(ValueError, match="DEVICE"):
        devices_from_setting("tpu")


def test_spool_round_trip_and_bad_files_set_aside(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path)
    spool.save(12, result_from_report(PASSING))
    spool.save(3, result_from_report({"verdict": "fail", "reason": "nan"}))
    (tmp_path / "9.json").write_text("{not json")
    assert [job_id for job_id, _ in spool.pending()] == [3, 12]
    assert (tmp_path / "9.bad").exists()
    spool.remove(3)
    assert [job_id for job_id, _ in spool.pending()] == [12]
