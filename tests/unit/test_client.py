"""quasar.client's HTTP behaviour (retry policy, error mapping, signing) at the transport level.

The API side here is a plain function behind httpx's own in-memory transport that answers with the
status codes a proxy or a struggling server would; the real API is exercised in
tests/integration/test_client_flow.py. Signatures are checked with the real `verify_request`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from bittensor import http_auth
from bittensor.sp_core import Keypair

import quasar
from quasar.client import (
    CLIENT_VERSION_HEADER,
    ApiError,
    ApiUnavailable,
    AuthenticationError,
    Conflict,
    InvalidRequest,
    InvalidResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidatorApiClient,
)
from quasar.client import api as client_module
from quasar.signing import verify_request

API = Keypair.create_from_uri("//QuasarApi")
MINER = Keypair.create_from_uri("//QuasarMiner")
INFO = {
    "api_hotkey": API.ss58_address,
    "netuid": 24,
    "network": "embedded",
    "version": "0.1.0",
    "min_client_version": "0.1.0",
    "blocks_until_reveal": 5,
    "reveal_window_blocks": 100,
}
COMMIT = {
    "submission_id": 1,
    "round_id": 1,
    "commit_block": 10,
    "reveal_block": 15,
    "reveal_deadline_block": 115,
}
WEIGHTS = {"round_id": None, "uids": [0], "weights": [1.0], "hotkeys": [None]}


def err(status: int, code: str, detail: str = "no", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "detail": detail, "request_id": "r1"}, headers=headers)


class Server:
    """Answers /v1/info itself and hands every other request to the scripted responses in order."""

    def __init__(self, *responses: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]):
        self.script = list(responses)
        self.requests: list[httpx.Request] = []
        self.info = dict(INFO)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers[CLIENT_VERSION_HEADER] == quasar.__version__
        if request.url.path == "/v1/info":
            return httpx.Response(200, json=self.info)
        self.requests.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return item(request) if callable(item) else item


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    return slept


def make(server: Server, wallet=MINER, **kw) -> ValidatorApiClient:
    return ValidatorApiClient("http://api.test", wallet, transport=httpx.MockTransport(server), **kw)


def test_get_retried_on_503_then_succeeds(sleeps):
    server = Server(err(503, "database_unavailable"), err(502, "x"), httpx.Response(200, json=WEIGHTS))
    assert make(server).weights().weights == [1.0]
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # exponential with jitter


def test_retry_after_is_honoured(sleeps):
    server = Server(err(429, "rate_limited", headers={"Retry-After": "3"}), httpx.Response(200, json=WEIGHTS))
    make(server).weights()
    assert sleeps == [3.0]


def test_retry_after_too_long_raises_at_once(sleeps):
    server = Server(err(429, "rate_limited", headers={"Retry-After": "600"}))
    with pytest.raises(RateLimited) as info:
        make(server).weights()
    assert info.value.retry_after == 600 and sleeps == []


def test_gives_up_after_retries(sleeps):
    server = Server(err(504, "gateway_timeout"))
    with pytest.raises(ServerError) as info:
        make(server, retries=2).weights()
    assert info.value.status == 504 and len(server.requests) == 3


def test_connection_errors_become_api_unavailable(sleeps):
    server = Server(httpx.ConnectError("refused"))
    with pytest.raises(ApiUnavailable, match="gave up after 4 attempt"):
        make(server).weights()
    assert len(server.requests) == 4


@pytest.mark.parametrize("failure", [err(503, "database_unavailable"), httpx.ConnectError("refused")])
def test_commit_is_never_retried(sleeps, failure):
    server = Server(failure)
    with pytest.raises((ServerError, ApiUnavailable)):
        make(server).commit("ab" * 32)
    assert len(server.requests) == 1 and sleeps == []


def test_commit_timeout_says_outcome_is_unknown(sleeps):
    server = Server(httpx.ReadTimeout("slow"))
    with pytest.raises(ApiUnavailable, match="may have reached the API"):
        make(server).commit("ab" * 32)


@pytest.mark.parametrize("call", ["claim", "reveal", "create", "finalize"])
def test_other_non_idempotent_calls_are_not_retried(sleeps, call):
    server = Server(err(503, "database_unavailable"))
    c = make(server)
    with pytest.raises(ServerError):
        if call == "claim":
            c.claim_job()
        elif call == "reveal":
            c.reveal(1, bytes(32), {"repo_url": "/tmp/r", "commit_sha": "a" * 40})
        elif call == "create":
            c.create_round(10)
        else:
            c.finalize_round(1)
    assert len(server.requests) == 1


def test_post_result_retried_with_fresh_signature(sleeps):
    store = http_auth.InMemoryNonceStore()
    accepted = {"job_id": 7, "submission_id": 1, "verdict": "pass", "submission_status": "scored"}

    def verified(request: httpx.Request) -> httpx.Response:
        caller = verify_request(
            request.headers,
            request.content,
            method=request.method,
            path=request.url.raw_path.decode(),
            self_hotkey=API.ss58_address,
            nonce_store=store,
            max_age=30,
            allowed_skew=5,
        )
        assert caller.hotkey_ss58 == MINER.ss58_address
        assert json.loads(request.content)["verdict"] == "pass"
        return httpx.Response(200, json=accepted)

    def verified_then_lost(request: httpx.Request) -> httpx.Response:
        verified(request)
        return err(502, "bad_gateway")

    server = Server(verified_then_lost, verified)
    result = make(server).post_result(7, {"verdict": "pass", "reason": "ok", "speedup": 1.5})
    assert result.submission_status == "scored"
    nonces = [r.headers[http_auth.HEADER_NONCE] for r in server.requests]
    assert len(nonces) == 2 and nonces[0] != nonces[1]


def test_wrong_receiver_refreshes_info_once(sleeps):
    other = Keypair.create_from_uri("//NewApiKey")
    server = Server(err(401, "wrong_receiver"), httpx.Response(200, json=COMMIT))
    c = make(server)
    c.info()
    server.info["api_hotkey"] = other.ss58_address
    assert c.commit("AB" * 32).submission_id == 1
    receivers = [r.headers[http_auth.HEADER_RECEIVER] for r in server.requests]
    assert receivers == [API.ss58_address, other.ss58_address]
    assert json.loads(server.requests[1].content) == {"commitment_hash": "ab" * 32}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidRequest),
        (401, AuthenticationError),
        (403, PermissionDenied),
        (404, NotFound),
        (409, Conflict),
        (413, InvalidRequest),
        (422, InvalidRequest),
        (500, ServerError),
        (418, ApiError),
    ],
)
def test_error_classes(status, cls, sleeps):
    server = Server(err(status, "some_code", "what to do"))
    with pytest.raises(cls) as info:
        make(server).commit("ab" * 32)
    assert type(info.value) is cls
    assert (info.value.status, info.value.code, info.value.detail, info.value.request_id) == (
        status,
        "some_code",
        "what to do",
        "r1",
    )


def test_error_that_is_not_the_api_shape(sleeps):
    server = Server(httpx.Response(502, text="<html>bad gateway</html>", headers={"X-Request-ID": "lb"}))
    with pytest.raises(ServerError) as info:
        make(server, retries=0).weights()
    assert info.value.code == "http_502" and "bad gateway" in info.value.detail
    assert info.value.request_id == "lb"


def test_unreadable_answer_is_invalid_response():
    server = Server(httpx.Response(200, json={"nope": 1}))
    with pytest.raises(InvalidResponse, match="Weights"):
        make(server).weights()


def test_claim_204_is_none():
    assert make(Server(httpx.Response(204))).claim_job() is None


def test_current_round_none_only_for_api_404():
    assert make(Server(err(404, "no_open_round"))).current_round() is None
    with pytest.raises(NotFound):
        make(Server(httpx.Response(404, text="not here"))).current_round()


def test_ready_false_on_503(sleeps):
    assert make(Server(httpx.Response(200, json={"status": "ready"}))).ready() is True
    server = Server(err(503, "database_unavailable"))
    assert make(server).ready() is False
    assert len(server.requests) == 1


def test_signed_call_needs_a_wallet():
    with pytest.raises(ValueError, match="wallet"):
        make(Server(httpx.Response(200, json=COMMIT)), wallet=None).commit("ab" * 32)


def test_request_bodies_are_validated_before_sending():
    server = Server(httpx.Response(200, json=COMMIT))
    c = make(server)
    with pytest.raises(ValueError):
        c.commit("not-a-hash")
    with pytest.raises(ValueError):
        c.reveal(1, b"salt", {"repo_url": "/tmp/r", "commit_sha": "a" * 40})
    assert server.requests == []


def test_public_reads_are_not_signed():
    server = Server(httpx.Response(200, json=WEIGHTS))
    make(server).weights()
    assert http_auth.HEADER_SIGNATURE not in server.requests[0].headers


def test_submission_by_commitment_asks_for_the_lowercase_hash_and_refuses_other_paths():
    digest = "AB" * 32
    submission = {
        "id": 7, "round_id": 1, "hotkey": MINER.ss58_address, "status": "committed",
        "commitment_hash": digest.lower(), "commit_block": 10, "reveal_block": 15, "reveal_deadline_block": 115,
    }  # fmt: skip
    server = Server(httpx.Response(200, json=submission))
    c = make(server)
    assert c.get_submission_by_commitment(digest).id == 7
    assert server.requests[0].url.path == f"/v1/submissions/by-commitment/{digest.lower()}"
    assert http_auth.HEADER_SIGNATURE not in server.requests[0].headers
    for bad in ("../../v1/weights", "ab" * 31, "zz" * 32):
        with pytest.raises(ValueError):
            c.get_submission_by_commitment(bad)
    assert len(server.requests) == 1
