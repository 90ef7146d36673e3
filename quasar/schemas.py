"""Wire shapes of the Validator API (HTTP contract v1), shared by the server and the client.

Fields may be added freely; none is ever renamed (other teams code against these). Hashes and
salts are lowercase hex, blocks are ints, times are ISO-8601 UTC.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from quasar import commitment as commit_reveal
from quasar.urlpolicy import MAX_URL_LENGTH

HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
CommitSha = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]

RoundStatus = Literal["open", "finalized"]
SubmissionStatus = Literal[
    "committed", "revealed", "evaluating", "scored", "rejected", "expired", "duplicate"
]
Verdict = Literal["pass", "fail", "error"]
JobStatus = Literal["queued", "claimed", "done"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


#: How deep JSON containers may nest in a request body, the body itself being the first level.
MAX_JSON_DEPTH = 32


def check_json_value(value: Any, where: str, depth: int = 1) -> None:
    """Raise ValueError if `value` (parsed JSON) holds a non-finite number or nests past MAX_JSON_DEPTH.

    Python's json reads `Infinity`, `NaN` and `1e400` (as inf) and nests as deep as its recursion
    allows; neither survives the database (PostgreSQL's JSON has no Infinity; deep values break
    serialisation), so both are refused where the body comes in.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(
                f"{where} holds {value}, not a finite number (JSON has no Infinity or NaN, and 1e400 "
                "overflows a double); send finite numbers"
            )
        return
    if not isinstance(value, dict | list):
        return
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} nests deeper than {MAX_JSON_DEPTH} levels; send flatter JSON")
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        check_json_value(item, where, depth + 1)


class RequestModel(BaseModel):
    """Request bodies refuse unknown fields (a typo is an error, not silently ignored), non-finite
    numbers and JSON nested past MAX_JSON_DEPTH, in typed fields and free-form ones alike."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _finite_and_shallow(cls, data: Any) -> Any:
        # Before the fields are read: free-form dicts (a result's report) get no other check.
        if isinstance(data, dict):
            for key, value in data.items():
                check_json_value(value, str(key)[:64], depth=2)
        return data


# --- errors ------------------------------------------------------------------------------------
class ErrorBody(WireModel):
    code: str = Field(description="Stable snake_case error code.")
    detail: str = Field(description="What went wrong and what to do, for people.")
    request_id: str | None = None


# --- service -----------------------------------------------------------------------------------
class Health(WireModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    chain: Literal["ok", "unavailable"]
    block: int | None = None


class Info(WireModel):
    api_hotkey: str
    netuid: int
    network: str
    version: str
    min_client_version: str
    blocks_until_reveal: int
    reveal_window_blocks: int
    block_time_seconds: float | None = None
    current_block: int | None = None


# --- rounds ------------------------------------------------------------------------------------
class TargetShape(WireModel):
    batch: int = Field(1, ge=1)
    seq_len: int = Field(100_000, ge=1)
    heads: int = Field(8, ge=1)
    head_dim_k: int = Field(64, ge=1)
    head_dim_v: int = Field(64, ge=1)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class RoundCreate(RequestModel):
    duration_blocks: int = Field(ge=1, le=10_000_000)
    target_shape: TargetShape | None = None


class Round(WireModel):
    id: int
    status: RoundStatus
    start_block: int
    end_block: int
    target_shape: TargetShape
    baseline_ms: float | None = None
    winner_hotkey: str | None = None
    finalized_block: int | None = None
    evaluator_version: str | None = Field(
        None,
        description="The evaluator version this round's results must come from; pinned by its first pass or fail naming one.",
    )
    baseline_id: str | None = Field(
        None, description="sha256 of the baseline sources this round's speed-ups must be measured against."
    )


class RoundPage(WireModel):
    items: list[Round]
    total: int
    limit: int
    offset: int


class RoundBest(WireModel):
    """One round's best correct time (the dashboard's chart, `GET /v1/history`)."""

    round_id: int
    status: RoundStatus
    start_block: int
    end_block: int
    baseline_ms: float | None = None
    best_ms: float | None = None
    best_hotkey: str | None = None
    best_speedup: float | None = None
    submissions: int = 0
    winner_hotkey: str | None = None


class RoundHistory(WireModel):
    rounds: list[RoundBest]


# --- submissions -------------------------------------------------------------------------------
class CommitRequest(RequestModel):
    commitment_hash: Sha256Hex


class CommitResponse(WireModel):
    submission_id: int
    round_id: int
    commit_block: int
    reveal_block: int
    reveal_deadline_block: int


class RevealPayload(RequestModel):
    """What a reveal discloses, exactly as hashed into its commitment: the one type that owns the hash.

    The miner commits ``payload.commitment(salt)``, keeps the payload (its state file holds this
    type), and reveals it with the salt; the API checks the reveal with :meth:`matches`.
    """

    repo_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    commit_sha: CommitSha
    inference_url: str | None = Field(None, max_length=MAX_URL_LENGTH)

    @field_validator("commit_sha", mode="before")
    @classmethod
    def _sha_is_lowercase(cls, value: Any) -> Any:
        if isinstance(value, str) and not HEX40.match(value):
            raise ValueError("commit_sha must be 40 lowercase hex characters (a full git SHA-1)")
        return value

    def wire(self) -> dict[str, Any]:
        """The mapping that is hashed: the fields, an ``inference_url`` of None left out (as the hash leaves it out)."""
        return self.model_dump(exclude_none=True)

    def commitment(self, salt: bytes | str) -> str:
        """The commitment hash of this payload under ``salt`` (the 32 raw bytes or their hex)."""
        return commit_reveal.commitment_hash(_salt_bytes(salt), self.wire())

    def matches(self, commitment_hash: str, salt: bytes | str) -> bool:
        """Constant-time check that ``salt`` and this payload reproduce ``commitment_hash``."""
        return commit_reveal.matches(commitment_hash, _salt_bytes(salt), self.wire())


def _salt_bytes(salt: bytes | str) -> bytes:
    return bytes(salt) if isinstance(salt, bytes | bytearray) else bytes.fromhex(salt)


class RevealRequest(RequestModel):
    salt: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="The 32-byte salt used in the commitment, as 64 lowercase hex characters."
    )
    payload: RevealPayload


class Submission(WireModel):
    id: int
    round_id: int
    hotkey: str
    status: SubmissionStatus
    commitment_hash: str
    commit_block: int
    reveal_block: int
    reveal_deadline_block: int
    revealed_block: int | None = None
    repo_url: str | None = None
    commit_sha: str | None = None
    inference_url: str | None = None
    kernel_tree_hash: str | None = None
    duplicate_of: int | None = None
    sandbox: str | None = Field(
        None, description="The sandboxes its verdicts were reached in ('; '-separated)."
    )
    score: float | None = Field(None, description="Median speed-up over the baseline across results.")
    median_ms: float | None = None
    reason: str | None = None
    created_at: datetime | None = None


# --- jobs --------------------------------------------------------------------------------------
class Job(WireModel):
    job_id: int
    submission_id: int
    round_id: int
    repo_url: str
    commit_sha: str
    inference_url: str | None = None
    miner_hotkey: str
    target_shape: TargetShape
    attempt: int
    lease_expires_at: datetime
    lease_seconds: int
    win_margin: float = Field(
        description="The API's WIN_MARGIN: the evaluation measures until its interval is clear of 1 + this."
    )


class Heartbeat(WireModel):
    job_id: int
    lease_expires_at: datetime


class LogitCheck(WireModel):
    verdict: Verdict
    reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


#: Shapes of a result's identifiers; the validator checks a report against the same ones.
TREE_HASH_PATTERN = r"^[0-9a-f]{40,64}$"
EVALUATOR_VERSION_PATTERN = r"^[0-9A-Za-z._-]{1,32}$"
BASELINE_ID_PATTERN = r"^[0-9a-f]{64}$"


class JobResult(RequestModel):
    verdict: Verdict
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    detail: str | None = Field(None, max_length=4000)
    median_ms: float | None = Field(None, gt=0)
    baseline_ms: float | None = Field(None, gt=0)
    speedup: float | None = Field(None, gt=0)
    speedup_ci_low: float | None = Field(None, gt=0, description="Low end of the speed-up's 95% interval.")
    speedup_ci_high: float | None = Field(None, gt=0, description="High end of the speed-up's 95% interval.")
    inconclusive: bool | None = Field(
        None,
        description="The interval still straddled 1 + WIN_MARGIN after the most batches allowed: never counts.",
    )
    evaluator_version: Annotated[str, StringConstraints(pattern=EVALUATOR_VERSION_PATTERN)] | None = None
    baseline_id: Annotated[str, StringConstraints(pattern=BASELINE_ID_PATTERN)] | None = Field(
        None, description="sha256 of the baseline's sources the speed-up was measured against."
    )
    max_rel_error: float | None = Field(None, ge=0)
    peak_mem_mb: float | None = Field(None, ge=0)
    kernel_tree_hash: Annotated[str, StringConstraints(pattern=TREE_HASH_PATTERN)] | None = None
    sandbox: str | None = Field(
        None,
        max_length=200,
        description="Where the submission ran, e.g. 'bwrap, cgroup v2, uid 65534, seccomp'.",
    )
    logit_check: LogitCheck | None = None
    report: dict[str, Any] | None = Field(None, description="The full evaluation report, kept for audit.")

    @model_validator(mode="after")
    def _interval_in_order(self) -> JobResult:
        low, high = self.speedup_ci_low, self.speedup_ci_high
        if low is not None and high is not None and low > high:
            raise ValueError(f"speedup_ci_low ({low}) must not exceed speedup_ci_high ({high})")
        return self


class ValidatorResult(WireModel):
    """One validator's result on a submission, as the API recorded it (public, for audit)."""

    validator_hotkey: str
    attempt: int
    verdict: Verdict
    reason: str
    speedup: float | None = Field(None, description="Recomputed by the API: baseline_ms / median_ms.")
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
    median_ms: float | None = None
    baseline_ms: float | None = None
    evaluator_version: str | None = None
    outlier: bool | None = Field(
        None, description="This result disagrees with at least two other validators' on the same submission."
    )
    created_at: datetime


class JobResultAccepted(WireModel):
    job_id: int
    submission_id: int
    verdict: Verdict
    submission_status: SubmissionStatus
    requeued: bool = False


# --- scores ------------------------------------------------------------------------------------
class LeaderboardEntry(WireModel):
    rank: int | None
    submission_id: int
    hotkey: str
    status: SubmissionStatus
    score: float | None
    median_ms: float | None
    correct: bool | None
    verified: bool | None
    counted: bool
    #: Validators that judged it, and how many must before it counts.
    evaluations: int = 0
    evaluations_required: int = 1
    reason: str | None = None
    sandbox: str | None = None
    commit_block: int
    #: The 95% interval of ``score`` (medians over the passing results that reported one).
    score_ci_low: float | None = None
    score_ci_high: float | None = None
    inconclusive: bool | None = None


class Leaderboard(WireModel):
    round_id: int | None
    entries: list[LeaderboardEntry]


class Weights(WireModel):
    round_id: int | None
    uids: list[int]
    weights: list[float]
    hotkeys: list[str | None]
