"""Request bodies (quasar.schemas.RequestModel): no non-finite number and no JSON deeper than the limit."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from quasar import schemas
from quasar.schemas import MAX_JSON_DEPTH, JobResult, RequestModel, check_json_value

REQUEST_MODELS = [m for m in vars(schemas).values() if isinstance(m, type) and issubclass(m, RequestModel)]


def test_every_request_body_is_a_request_model() -> None:
    assert {m.__name__ for m in REQUEST_MODELS} >= {
        "RoundCreate", "CommitRequest", "RevealPayload", "RevealRequest", "JobResult"
    }  # fmt: skip


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("raw", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_every_request_body_refuses_non_finite_numbers(model: type[RequestModel], raw: str) -> None:
    # As the API parses a body: Python's json reads all four (1e400 as inf).
    body = json.loads('{"anything": {"deep": [RAW]}}'.replace("RAW", raw))
    with pytest.raises(ValidationError, match="not a finite number"):
        model.model_validate(body)


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda m: m.__name__)
def test_every_request_body_refuses_deep_json(model: type[RequestModel]) -> None:
    body = json.loads('{"anything": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}")
    with pytest.raises(ValidationError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        model.model_validate(body)


def test_typed_float_fields_refuse_non_finite_numbers_built_in_python() -> None:
    with pytest.raises(ValidationError, match="finite"):
        JobResult(verdict="pass", reason="ok", speedup=math.inf)
    with pytest.raises(ValidationError, match="finite"):
        JobResult.model_validate(
            {
                "verdict": "pass",
                "reason": "ok",
                "logit_check": {"verdict": "pass", "metrics": {"kl": math.nan}},
            }
        )


def test_check_json_value_depth_counts_the_body_as_level_one() -> None:
    check_json_value([[1.0, {"a": -0.0}]], "x", depth=MAX_JSON_DEPTH - 2)
    with pytest.raises(ValueError, match="x nests deeper"):
        check_json_value([[[]]], "x", depth=MAX_JSON_DEPTH - 1)
    check_json_value({"big": 10**400, "s": "NaN", "t": True}, "x")  # ints, strings and bools are not floats
