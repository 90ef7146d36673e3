"""Verify a miner's inference server over HTTP: fetch `/model_info`, send a challenge, judge it.

The URL is checked by the inference URL policy (`quasar.urlpolicy`) and its host resolved once and
pinned, so a miner cannot point a validator at its own network. On a real chain each request is
signed with the validator's hotkey (`quasar.signing.BtAuth`) and addressed to the miner's hotkey
(``receiver``, from the miner's submission — never from the server itself, or a server could relay a
validator's request to an honest miner and pass on its answer). Timing is the validator's wall clock
around the `/inference` call.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from quasar.inference.schemas import InferenceResponse, ModelInfo
from quasar.reasons import (
    LOGIT_AUTH_REFUSED,
    LOGIT_BAD_RESPONSE,
    LOGIT_RATE_LIMITED,
    LOGIT_SERVER_BUSY,
    LOGIT_SERVER_ERROR,
    LOGIT_SERVER_REJECTED_CHALLENGE,
    LOGIT_TIMEOUT,
    LOGIT_UNREACHABLE,
    LOGIT_VOCAB_MISMATCH,
)
from quasar.urlpolicy import UrlNotAllowed, check_url, resolve_and_pin
from quasar.verification.result import VerificationResult
from quasar.verification.verifier import MinerAnswer, Verifier

# HTTP status -> (verdict, reason) for a refused /inference call. Refusals that may be the
# validator's side (its signature, its permit, its rate) are errors, to be retried, not failures.
_STATUS_VERDICTS: dict[int, tuple[str, str]] = {
    401: ("error", LOGIT_AUTH_REFUSED),
    403: ("error", LOGIT_AUTH_REFUSED),
    429: ("error", LOGIT_RATE_LIMITED),
    503: ("error", LOGIT_SERVER_BUSY),
    413: ("fail", LOGIT_SERVER_REJECTED_CHALLENGE),
    422: ("fail", LOGIT_SERVER_REJECTED_CHALLENGE),
}


def pinned_client(
    url: str,
    *,
    dev_mode: bool,
    timeout: float,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An httpx client for ``url`` that connects to the address resolved now (no second lookup)."""
    checked = check_url(url, dev_mode=dev_mode, allowed_hosts=(), kind="inference")
    checked, ip = resolve_and_pin(checked, dev_mode=dev_mode)
    parts = urlsplit(checked.rstrip("/"))
    headers: dict[str, str] = {}
    extensions: dict[str, Any] = {}
    base = checked.rstrip("/")
    if ip is not None and parts.hostname and parts.hostname != ip.strip("[]"):
        host = f"[{ip}]" if ":" in ip else ip
        netloc = f"{host}:{parts.port}" if parts.port else host
        base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        headers["Host"] = parts.netloc
        if parts.scheme == "https":
            extensions["sni_hostname"] = parts.hostname
    client = httpx.Client(base_url=base, headers=headers, timeout=timeout, auth=auth, transport=transport)
    if extensions:
        client.event_hooks["request"].append(lambda request: request.extensions.update(extensions))
    return client


def verify_server(
    url: str,
    verifier: Verifier,
    *,
    dev_mode: bool,
    timeout: float = 120.0,
    wallet: Any | None = None,
    receiver: str | None = None,
    seed: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> tuple[VerificationResult, dict[str, Any]]:
    """Check one server; returns the result and what the server said about itself (`/model_info`).

    With ``wallet`` every request is signed for ``receiver`` (the miner's hotkey); without it the
    requests go unsigned (the embedded chain).
    """
    challenge = verifier.challenge(seed)

    def outcome(
        verdict: str, reason: str, detail: str, metrics: dict[str, float] | None = None
    ) -> VerificationResult:
        return VerificationResult(verdict, reason, detail, metrics or {}, challenge.seed)  # type: ignore[arg-type]

    auth = None
    if wallet is not None:
        if not receiver:
            raise ValueError("signed verification needs the miner's hotkey as receiver")
        from quasar.signing import BtAuth

        auth = BtAuth(wallet, receiver=receiver)
    try:
        client = pinned_client(url, dev_mode=dev_mode, timeout=timeout, auth=auth, transport=transport)
    except UrlNotAllowed as exc:
        return outcome("fail", LOGIT_UNREACHABLE, f"inference URL refused: {exc.detail} ({exc.code})"), {}
    info: dict[str, Any] = {}
    with client:
        try:
            got = client.get("/model_info")
            if got.status_code != 200:
                return outcome("fail", LOGIT_BAD_RESPONSE, f"/model_info answered {got.status_code}"), info
            info = got.json()
            model = ModelInfo.model_validate(info)
        except httpx.TimeoutException:
            return outcome("fail", LOGIT_TIMEOUT, f"/model_info took longer than {timeout} s"), info
        except httpx.TransportError as exc:
            return outcome("fail", LOGIT_UNREACHABLE, f"{url}: {exc}"), info
        except (ValueError, ValidationError) as exc:
            return outcome("fail", LOGIT_BAD_RESPONSE, f"/model_info is not the v1 shape: {exc}"), info
        if model.vocab_size != verifier.vocab_size:
            return (
                outcome(
                    "fail",
                    LOGIT_VOCAB_MISMATCH,
                    f"server vocab {model.vocab_size}, reference {verifier.vocab_size}",
                ),
                info,
            )
        started = time.perf_counter()
        try:
            answered = client.post("/inference", json=challenge.request_body())
        except httpx.TimeoutException:
            return outcome("fail", LOGIT_TIMEOUT, f"/inference took longer than {timeout} s"), info
        except httpx.TransportError as exc:
            return outcome("fail", LOGIT_UNREACHABLE, f"{url}: {exc}"), info
        elapsed = time.perf_counter() - started
    if answered.status_code != 200:
        verdict, reason = _STATUS_VERDICTS.get(
            answered.status_code,
            ("fail", LOGIT_SERVER_ERROR if answered.status_code >= 500 else LOGIT_BAD_RESPONSE),
        )
        return outcome(
            verdict, reason, f"/inference answered {answered.status_code}: {answered.text[:300]}"
        ), info
    try:
        body = InferenceResponse.model_validate_json(answered.content)
    except ValidationError as exc:
        return outcome(
            "fail", LOGIT_BAD_RESPONSE, f"/inference answer is not the v1 shape: {exc.errors()[:3]}"
        ), info
    answer = MinerAnswer(body.output_ids, body.logits, body.prefill_ms, body.decode_ms)
    return verifier.check(challenge, answer, declared_dtype=model.dtype, elapsed_s=elapsed), info
