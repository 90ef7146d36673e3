"""Every reason code, defined once: the constant, who is at fault, and one sentence for people.

A reason code is a stable snake_case string that the evaluation, the validator and the API pass
through unchanged: the API stores it, the dashboard and the local demo show it. Never change a
code's string; add a new one instead.

``fault`` says who a code usually blames:

``submission``  the miner's kernel or repository (verdict ``fail``, counted against it);
``validator``   the validator's own side (verdict ``error``: the job goes to another validator);
``api``         a status the API sets from the results (``duplicate``, ``unevaluable``);
``round``       a status the API sets when a round moves on without the submission;
``none``        not a failure (``ok``).

Where a code can blame either side (a fetch that fails on the network or on a broken repository),
the code's ``fault`` is the usual case and the verdict is decided where the code is raised.

Logit verification reasons (:data:`LOGIT_REASONS`) are a namespace of their own: they travel in a
result's logit check, not in its ``reason``, and two of them (``ok``, ``timeout``) share a string
with a job reason while meaning something else.

Standard library only: the sandboxed evaluation worker and the API both import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Fault = Literal["submission", "validator", "api", "round", "none"]
FAULTS: tuple[str, ...] = ("submission", "validator", "api", "round", "none")


@dataclass(frozen=True)
class Reason:
    code: str
    fault: Fault
    words: str


# --- job result reasons ---------------------------------------------------------------------------
REASON_OK = "ok"

# The trusted checks of the bench (quasar/bench).
REASON_INCORRECT_OUTPUT = "incorrect_output"
REASON_INCORRECT_FINAL_STATE = "incorrect_final_state"
REASON_NAN_OR_INF = "nan_or_inf"
REASON_WRONG_SHAPE = "wrong_shape"
REASON_WRONG_DTYPE = "wrong_dtype"
REASON_WRONG_DEVICE = "wrong_device"
REASON_BAD_RETURN = "bad_return_value"
REASON_ALIASED_OUTPUT = "aliased_output"
REASON_KERNEL_EXCEPTION = "kernel_exception"
REASON_ENTRY_POINT = "entry_point_missing"
REASON_HARNESS_ERROR = "harness_error"
#: An ``error`` whose validator could not build its sandbox: the submission never ran, so the API does
#: not count that attempt against it.
REASON_SANDBOX_UNAVAILABLE = "sandbox_unavailable"

# The sandboxed evaluation (quasar/evaluation).
REASON_TIMEOUT = "timeout"
REASON_MEMORY_LIMIT = "memory_limit"
REASON_PROCESS_LIMIT = "process_limit"
REASON_DISK_LIMIT = "disk_limit"
REASON_CPU_TIME_LIMIT = "cpu_time_limit"
REASON_FILE_SIZE_LIMIT = "file_size_limit"
REASON_WORKER_EXITED = "worker_exited"
REASON_WORKER_CRASHED = "worker_crashed"
REASON_TENSOR_SUBCLASS = "tensor_subclass"
REASON_CHECKER_FAILED = "checker_failed"
REASON_IMPORT_FAILED = "import_failed"
#: A child wrote something that is not a reply, or too much of it (``channel``).
REASON_PROTOCOL = "protocol_violation"
#: A saved output is missing, too large or not plain tensors (``checker``).
REASON_UNLOADABLE = "unloadable_output"
#: A worker's processes could not be frozen between batches (``timed_runs``).
REASON_FREEZE_FAILED = "freeze_failed"
#: The baseline ran slower beside the submission than alone: GPU work the submission left running
#: while frozen, or another process on the validator's GPU (``timed_runs``).
REASON_INTERFERENCE = "interference"

# Fetching the submission (quasar/evaluation/fetch.py: ``FetchError.code``).
REASON_FETCH_TIMEOUT = "fetch_timeout"
REASON_REPO_TOO_LARGE = "repo_too_large"
REASON_INVALID_COMMIT_SHA = "invalid_commit_sha"
REASON_URL_NOT_ALLOWED = "url_not_allowed"
REASON_FETCH_FAILED = "fetch_failed"
REASON_COMMIT_NOT_FOUND = "commit_not_found"
REASON_COMMIT_MISMATCH = "commit_mismatch"
REASON_KERNEL_MISSING = "kernel_missing"

# The validator's job runner (quasar/validator/worker.py).
REASON_VALIDATOR_ERROR = "validator_error"
REASON_LOGIT_ERROR = "logit_check_error"

# The miner's local bench (quasar/miner/bench.py).
REASON_BENCH_INTERRUPTED = "bench_interrupted"
REASON_BENCH_CRASHED = "bench_crashed"

# Statuses the API sets (validator_api/services).
REASON_UNEVALUABLE = "unevaluable"
REASON_DUPLICATE = "duplicate"
REASON_NOT_REVEALED = "not_revealed"
REASON_UNEVALUATED = "unevaluated"


def _table(*rows: tuple[str, Fault, str]) -> dict[str, Reason]:
    table: dict[str, Reason] = {}
    for code, fault, words in rows:
        if code in table:
            raise ValueError(f"reason code {code!r} is registered twice")
        table[code] = Reason(code, fault, words)
    return table


#: Job result reasons (``JobResult.reason``, a submission's ``reason``), by code.
REASONS: dict[str, Reason] = _table(
    (REASON_OK, "none", "it passed"),
    (REASON_INCORRECT_OUTPUT, "submission", "its kernel returned wrong results"),
    (REASON_INCORRECT_FINAL_STATE, "submission", "its kernel returned a wrong final state"),
    (REASON_NAN_OR_INF, "submission", "its kernel returned NaN or Inf"),
    (REASON_WRONG_SHAPE, "submission", "its kernel returned a tensor of the wrong shape"),
    (REASON_WRONG_DTYPE, "submission", "its kernel returned a tensor of the wrong dtype"),
    (REASON_WRONG_DEVICE, "submission", "its kernel returned a tensor on the wrong device"),
    (REASON_BAD_RETURN, "submission", "its kernel did not return (o, final_state)"),
    (REASON_ALIASED_OUTPUT, "submission", "its kernel returned a tensor that shares memory with an input"),
    (REASON_KERNEL_EXCEPTION, "submission", "its kernel raised an exception"),
    (REASON_ENTRY_POINT, "submission", "its repository has no usable chunk_quasar entry point"),
    (REASON_HARNESS_ERROR, "validator", "the validator's evaluation harness failed"),
    (REASON_SANDBOX_UNAVAILABLE, "validator", "the validator could not build its sandbox"),
    (REASON_TIMEOUT, "submission", "its kernel did not finish in time"),
    (REASON_MEMORY_LIMIT, "submission", "it used more memory than allowed"),
    (REASON_PROCESS_LIMIT, "submission", "it started more processes than allowed"),
    (REASON_DISK_LIMIT, "submission", "it wrote more to disk than allowed"),
    (REASON_CPU_TIME_LIMIT, "submission", "it used more CPU time than allowed"),
    (REASON_FILE_SIZE_LIMIT, "submission", "it wrote a file larger than allowed"),
    (REASON_WORKER_EXITED, "submission", "its process exited before the evaluation finished"),
    (REASON_WORKER_CRASHED, "submission", "its process crashed"),
    (REASON_TENSOR_SUBCLASS, "submission", "its kernel returned something other than plain tensors"),
    (REASON_CHECKER_FAILED, "validator", "the validator's trusted checker failed"),
    (REASON_IMPORT_FAILED, "submission", "its kernel could not be imported"),
    (REASON_PROTOCOL, "submission", "its process broke the evaluation protocol"),
    (REASON_UNLOADABLE, "submission", "its output could not be loaded as plain tensors"),
    (REASON_FREEZE_FAILED, "validator", "the validator could not freeze its timed workers"),
    (REASON_INTERFERENCE, "submission", "it left GPU work running that slowed the baseline"),
    (REASON_FETCH_TIMEOUT, "validator", "its repository could not be fetched in time"),
    (REASON_REPO_TOO_LARGE, "submission", "its repository is too large"),
    (REASON_INVALID_COMMIT_SHA, "submission", "its commit SHA is not a full 40-character SHA-1"),
    (REASON_URL_NOT_ALLOWED, "submission", "its repository URL is not allowed"),
    (REASON_FETCH_FAILED, "validator", "its repository could not be fetched"),
    (REASON_COMMIT_NOT_FOUND, "submission", "its repository does not have the revealed commit"),
    (REASON_COMMIT_MISMATCH, "submission", "its repository sent a different commit than revealed"),
    (REASON_KERNEL_MISSING, "submission", "its commit has no fla/ops/quasar kernel directory"),
    (REASON_VALIDATOR_ERROR, "validator", "the validator failed to evaluate it"),
    (REASON_LOGIT_ERROR, "validator", "the validator could not complete logit verification"),
    (REASON_BENCH_INTERRUPTED, "validator", "the local bench was interrupted"),
    (REASON_BENCH_CRASHED, "validator", "the local bench crashed"),
    (REASON_UNEVALUABLE, "api", "no validator could evaluate it"),
    (REASON_DUPLICATE, "api", "it copies a kernel another miner committed earlier"),
    (REASON_NOT_REVEALED, "round", "it was never revealed"),
    (REASON_UNEVALUATED, "round", "the round ended before it was evaluated"),
)

#: The codes a worker may put before ``": "`` in an error; any other becomes ``kernel_exception``
#: (``channel.fail_from_error``: a worker cannot invent a reason code).
WORKER_ERROR_CODES = frozenset(
    {
        REASON_KERNEL_EXCEPTION,
        REASON_TENSOR_SUBCLASS,
        REASON_BAD_RETURN,
        REASON_WRONG_SHAPE,
        REASON_WRONG_DTYPE,
    }
)


# --- logit verification reasons (quasar/verification) ---------------------------------------------
LOGIT_OK = "ok"
LOGIT_TOKEN_MISMATCH = "token_mismatch"
LOGIT_LOGITS_DIVERGE = "logits_diverge"
LOGIT_KL_TOO_HIGH = "kl_too_high"
LOGIT_TOPK_DISAGREE = "topk_disagree"
LOGIT_RAW_COSINE_BELOW_THRESHOLD = "raw_cosine_below_threshold"
LOGIT_MAX_ABS_DIFF_ABOVE_THRESHOLD = "max_abs_diff_above_threshold"
LOGIT_WRONG_LENGTH = "wrong_length"
LOGIT_BAD_TOKEN_IDS = "bad_token_ids"
LOGIT_MISSING_LOGITS = "missing_logits"
LOGIT_BAD_LOGITS = "bad_logits"
LOGIT_VOCAB_MISMATCH = "vocab_mismatch"
LOGIT_UNSUPPORTED_DTYPE = "unsupported_dtype"
LOGIT_BAD_RESPONSE = "bad_response"
LOGIT_SERVER_REJECTED_CHALLENGE = "server_rejected_challenge"
LOGIT_SERVER_ERROR = "server_error"
LOGIT_UNREACHABLE = "unreachable"
LOGIT_TIMEOUT = "timeout"
LOGIT_SERVER_BUSY = "server_busy"
LOGIT_RATE_LIMITED = "rate_limited"
LOGIT_AUTH_REFUSED = "auth_refused"
LOGIT_REFERENCE_FAILED = "reference_failed"

#: Logit verification reasons (``LogitCheck.reason``), by code. ``submission`` here is the miner's
#: inference server; ``validator`` covers refusals that may be ours (signature, permit, rate).
LOGIT_REASONS: dict[str, Reason] = _table(
    (LOGIT_OK, "none", "the answer matches the reference model"),
    (LOGIT_TOKEN_MISMATCH, "submission", "a generated token is not the reference's greedy choice"),
    (LOGIT_LOGITS_DIVERGE, "submission", "the logits' centred cosine is below the threshold"),
    (LOGIT_KL_TOO_HIGH, "submission", "the next-token distributions differ by more than the KL threshold"),
    (LOGIT_TOPK_DISAGREE, "submission", "the top-k token ids differ from the reference's"),
    (LOGIT_RAW_COSINE_BELOW_THRESHOLD, "submission", "raw-logit cosine below COSINE_SIM_THRESHOLD"),
    (LOGIT_MAX_ABS_DIFF_ABOVE_THRESHOLD, "submission", "raw-logit max-abs-diff above MAX_ABS_DIFF_THRESHOLD"),
    (LOGIT_WRONG_LENGTH, "submission", "the answer has the wrong number of tokens"),
    (LOGIT_BAD_TOKEN_IDS, "submission", "the answer holds ids outside the vocabulary"),
    (LOGIT_MISSING_LOGITS, "submission", "logits for a requested position are missing"),
    (LOGIT_BAD_LOGITS, "submission", "logits could not be decoded or are not finite"),
    (LOGIT_VOCAB_MISMATCH, "submission", "the server's vocabulary size differs from the reference's"),
    (LOGIT_UNSUPPORTED_DTYPE, "submission", "the server declares a dtype with no calibrated thresholds"),
    (LOGIT_BAD_RESPONSE, "submission", "the server's answer is not the v1 wire format"),
    (
        LOGIT_SERVER_REJECTED_CHALLENGE,
        "submission",
        "the server refused a challenge within the documented limits",
    ),
    (LOGIT_SERVER_ERROR, "submission", "the server failed (5xx)"),
    (LOGIT_UNREACHABLE, "submission", "the server could not be reached"),
    (LOGIT_TIMEOUT, "submission", "the server did not answer in time"),
    (LOGIT_SERVER_BUSY, "validator", "the server was busy (503); retry later"),
    (LOGIT_RATE_LIMITED, "validator", "the server rate-limited this validator (429); retry later"),
    (LOGIT_AUTH_REFUSED, "validator", "the server refused this validator's signature or role"),
    (LOGIT_REFERENCE_FAILED, "validator", "the validator's reference model failed"),
)


def describe(code: str) -> str:
    """The sentence for a job reason code; an unknown code is returned as it is."""
    reason = REASONS.get(code)
    return reason.words if reason is not None else code


def describe_logit(code: str) -> str:
    """The sentence for a logit verification reason code; an unknown code is returned as it is."""
    reason = LOGIT_REASONS.get(code)
    return reason.words if reason is not None else code


def fault(code: str) -> Fault | None:
    """Who a job reason code usually blames, or None for an unknown code."""
    reason = REASONS.get(code)
    return reason.fault if reason is not None else None
