"""The signed-request gate (`quasar.gate`) without a server: its checks in order, the inference server's
token bucket, and how the inference server words the gate's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bittensor import http_auth
from bittensor.http_auth import InMemoryNonceStore
from bittensor.sp_core import Keypair

from quasar.chain.devchain import DevChain
from quasar.chain.resilient import CachedChain
from quasar.gate import Refusal, SignedRequestGate
from quasar.inference.auth import error_response
from quasar.limits import TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_is_per_caller_and_refills() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(2, clock)
    assert limiter.hit("a") is None and limiter.hit("a") is None
    assert limiter.hit("a") == pytest.approx(30.0)
    assert limiter.hit("b") is None
    clock.now = 30.0
    assert limiter.hit("a") is None


@pytest.fixture
def keys() -> dict[str, Keypair]:
    return {name: Keypair.create_from_uri(f"//Gate{name}") for name in ("server", "validator", "miner", "owner")}


def _gate(tmp_path: Path, keys: dict[str, Keypair], **overrides: object) -> SignedRequestGate:
    chain = DevChain(tmp_path / "chain.sqlite", netuid=24, block_time_seconds=1000.0)
    chain.register(keys["validator"].ss58_address, "validator")
    chain.register(keys["miner"].ss58_address, "miner")
    fields: dict[str, object] = dict(
        receiver=keys["server"].ss58_address,
        chain=CachedChain(chain, metagraph_ttl_seconds=30.0, retry_seconds=5.0),
        netuid=24,
        min_validator_stake=0.0,
        owner_hotkey=keys["owner"].ss58_address,
        max_age=30.0,
        allowed_skew=5.0,
    )
    fields.update(overrides)
    return SignedRequestGate(**fields)  # type: ignore[arg-type]


def _admit(gate: SignedRequestGate, key: Keypair | None, role: str, nonces: InMemoryNonceStore) -> str:
    headers = (
        {}
        if key is None
        else http_auth.sign(key, method="POST", path="/x", body=b"{}", receiver_ss58=gate.receiver)
    )
    return gate.admit(headers, b"{}", method="POST", target="/x", role=role, nonce_store=nonces).hotkey  # type: ignore[arg-type]


def test_the_gate_refuses_in_order_with_stable_codes(tmp_path: Path, keys: dict[str, Keypair]) -> None:
    gate = _gate(tmp_path, keys)
    nonces = InMemoryNonceStore()
    stranger = Keypair.create_from_uri("//GateStranger")
    cases = [
        (None, "miner", 401, "unsigned"),
        (stranger, "miner", 403, "not_registered"),
        (keys["miner"], "validator", 403, "not_validator"),
        (keys["validator"], "owner", 403, "not_owner"),
    ]
    for key, role, status, code in cases:
        with pytest.raises(Refusal) as refused:
            _admit(gate, key, role, nonces)
        assert (refused.value.status, refused.value.code) == (status, code), refused.value
    assert _admit(gate, keys["validator"], "validator", nonces) == keys["validator"].ss58_address
    assert _admit(gate, keys["miner"], "miner", nonces) == keys["miner"].ss58_address
    assert _admit(gate, keys["owner"], "owner", nonces) == keys["owner"].ss58_address


def test_the_budget_is_counted_after_the_signature_and_before_the_role(
    tmp_path: Path, keys: dict[str, Keypair]
) -> None:
    gate = _gate(tmp_path, keys, limiter=TokenBucketLimiter(1), limit_setting="SOME_LIMIT")
    nonces = InMemoryNonceStore()
    with pytest.raises(Refusal):
        _admit(gate, None, "validator", nonces)  # unsigned: counts against nobody
    with pytest.raises(Refusal) as not_validator:
        _admit(gate, keys["miner"], "validator", nonces)
    assert not_validator.value.code == "not_validator"
    with pytest.raises(Refusal) as limited:
        _admit(gate, keys["miner"], "validator", nonces)
    assert (limited.value.status, limited.value.code) == (429, "rate_limited")
    assert "SOME_LIMIT" in limited.value.detail and limited.value.retry_after == pytest.approx(60.0, abs=1)
    assert _admit(gate, keys["validator"], "validator", nonces) == keys["validator"].ss58_address


def test_the_inference_server_words_role_refusals_as_not_a_validator() -> None:
    for code in ("not_registered", "not_validator"):
        response = error_response(Refusal(403, code, "only validators"))
        assert response.status_code == 403
        assert json.loads(response.body) == {"code": "not_a_validator", "detail": "only validators"}
    limited = error_response(Refusal(429, "rate_limited", "wait", retry_after=19.2))
    assert limited.headers["retry-after"] == "20"
    assert json.loads(limited.body)["code"] == "rate_limited"
