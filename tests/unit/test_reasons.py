"""The reason-code registry: one place for every code, each with a fault class and a sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quasar import reasons, schemas

ROOT = Path(__file__).resolve().parents[2]
REGISTRIES = {"job": reasons.REASONS, "logit": reasons.LOGIT_REASONS}


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_every_code_has_a_fault_and_a_sentence(name: str) -> None:
    for code, reason in REGISTRIES[name].items():
        assert reason.code == code
        assert reason.fault in reasons.FAULTS, code
        assert reason.words.strip(), code


def test_constants_are_unique_and_registered() -> None:
    job = {k: v for k, v in vars(reasons).items() if k.startswith("REASON_") and isinstance(v, str)}
    logit = {k: v for k, v in vars(reasons).items() if k.startswith("LOGIT_") and isinstance(v, str)}
    for constants, registry in ((job, reasons.REASONS), (logit, reasons.LOGIT_REASONS)):
        assert len(set(constants.values())) == len(constants), "two constants share one code"
        assert set(constants.values()) == set(registry), "a constant without an entry, or the reverse"


def test_codes_match_what_the_api_accepts() -> None:
    pattern = schemas.JobResult.model_json_schema()["properties"]["reason"]["pattern"]
    for registry in REGISTRIES.values():
        for code in registry:
            assert re.fullmatch(pattern, code), code


def test_worker_error_codes_are_registered() -> None:
    assert set(reasons.REASONS) >= reasons.WORKER_ERROR_CODES


def test_describe() -> None:
    assert reasons.describe(reasons.REASON_INCORRECT_OUTPUT) == "its kernel returned wrong results"
    assert reasons.describe("no_such_code") == "no_such_code"
    assert reasons.describe_logit(reasons.LOGIT_TIMEOUT) == "the server did not answer in time"
    assert reasons.describe_logit("no_such_code") == "no_such_code"
    assert reasons.fault(reasons.REASON_SANDBOX_UNAVAILABLE) == "validator"
    assert reasons.fault("no_such_code") is None


def test_reasons_imports_only_the_standard_library() -> None:
    source = (ROOT / "quasar" / "reasons.py").read_text()
    imported = re.findall(r"^(?:from|import)\s+([\w.]+)", source, re.MULTILINE)
    assert set(imported) <= {"__future__", "dataclasses", "typing"}, imported


def test_codes_are_defined_only_in_the_registry() -> None:
    definition = re.compile(r"^\s*(?:REASON|LOGIT)_[A-Z_]+\s*(?::[^=]+)?=\s*[\"']", re.MULTILINE)
    registry = ROOT / "quasar" / "reasons.py"
    found = []
    for package in ("quasar", "validator_api"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == registry:
                continue
            for match in definition.finditer(path.read_text()):
                line = path.read_text().count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {match.group().strip()}")
    assert not found, "reason codes belong in quasar/reasons.py:\n" + "\n".join(found)
