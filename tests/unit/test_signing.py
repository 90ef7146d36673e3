"""quasar.signing: btauth/1 signing and the server-side checks, with real sr25519 and ed25519 keys."""

from __future__ import annotations

import time

import httpx
import pytest
from bittensor import http_auth
from bittensor.sp_core import CRYPTO_ED25519, Keypair

from quasar.signing import (
    AUTH_ERROR_CODES,
    AuthError,
    BtAuth,
    Unsigned,
    UnsupportedCrypto,
    asgi_request_target,
    auth_error_code,
    sign_headers,
    verify_request,
)
from quasar.wallets import create_dev_wallet

SERVER = Keypair.create_from_uri("//QuasarApi")
MINER = Keypair.create_from_uri("//QuasarMiner")
BODY = b'{"commitment_hash":"' + b"ab" * 32 + b'"}'
TARGET = "/v1/submissions/commit"


def _verify(headers, body=BODY, *, method="POST", path=TARGET, store=None, **kw):
    return verify_request(
        headers,
        body,
        method=method,
        path=path,
        self_hotkey=SERVER.ss58_address,
        nonce_store=store if store is not None else http_auth.InMemoryNonceStore(),
        max_age=kw.pop("max_age", 30.0),
        allowed_skew=kw.pop("allowed_skew", 5.0),
        **kw,
    )


def _signed(**kw):
    return sign_headers(
        kw.pop("key", MINER),
        method=kw.pop("method", "POST"),
        target=kw.pop("target", TARGET),
        body=kw.pop("body", BODY),
        receiver=kw.pop("receiver", SERVER.ss58_address),
        **kw,
    )


def test_round_trip_returns_caller():
    caller = _verify(_signed())
    assert caller.hotkey_ss58 == MINER.ss58_address
    assert caller.crypto_type == 1


def test_wallet_signs_like_a_keypair(tmp_path):
    wallet = create_dev_wallet("w", "h", tmp_path)
    caller = _verify(_signed(key=wallet))
    assert caller.hotkey_ss58 == wallet.hotkey.ss58_address


def test_header_names_are_case_insensitive():
    headers = {k.lower(): v for k, v in _signed().items()}
    assert _verify(headers).hotkey_ss58 == MINER.ss58_address


def test_no_headers_is_unsigned():
    with pytest.raises(Unsigned, match="sign"):
        _verify({"content-type": "application/json"})


def test_ed25519_refused_before_verification():
    ed = Keypair.create_from_uri("//QuasarMiner", CRYPTO_ED25519)
    headers = http_auth.sign(ed, method="POST", path=TARGET, body=BODY, receiver_ss58=SERVER.ss58_address)
    assert headers[http_auth.HEADER_CRYPTO] == "ed25519"
    store = http_auth.InMemoryNonceStore()
    with pytest.raises(UnsupportedCrypto):
        _verify(headers, store=store)
    # Refused before the SDK ran: not even its nonce was recorded.
    assert store.check_and_store(ed.ss58_address, int(headers[http_auth.HEADER_NONCE]))


@pytest.mark.parametrize("value", ["ed25519", "ecdsa", "0", "", "sr25519x"])
def test_crypto_header_other_than_sr25519_refused(value):
    headers = _signed()
    headers[http_auth.HEADER_CRYPTO] = value
    with pytest.raises(UnsupportedCrypto):
        _verify(headers)


@pytest.mark.parametrize("value", ["sr25519", "SR25519", "1"])
def test_explicit_sr25519_header_accepted(value):
    headers = _signed()
    headers[http_auth.HEADER_CRYPTO] = value
    assert _verify(headers).hotkey_ss58 == MINER.ss58_address


def test_signing_with_ed25519_key_fails_locally():
    with pytest.raises(ValueError, match="sr25519"):
        _signed(key=Keypair.create_from_uri("//X", CRYPTO_ED25519))


def test_malformed():
    headers = _signed()
    headers[http_auth.HEADER_NONCE] = "soon"
    with pytest.raises(http_auth.MalformedAuth):
        _verify(headers)


def test_duplicated_btauth_header_is_malformed():
    signed = _signed()
    pairs = [*signed.items(), (http_auth.HEADER_HOTKEY, SERVER.ss58_address)]
    with pytest.raises(http_auth.MalformedAuth, match="more than once"):
        _verify(httpx.Headers(pairs))


def test_wrong_receiver():
    with pytest.raises(http_auth.WrongReceiver):
        _verify(_signed(receiver=MINER.ss58_address))


def test_missing_receiver_refused():
    headers = http_auth.sign(MINER, method="POST", path=TARGET, body=BODY)
    with pytest.raises(http_auth.WrongReceiver):
        _verify(headers)


def test_stale_and_future():
    old = time.time_ns() - 31 * 10**9
    with pytest.raises(http_auth.StaleRequest):
        _verify(_signed(nonce_ns=old))
    future = time.time_ns() + 6 * 10**9
    with pytest.raises(http_auth.StaleRequest):
        _verify(_signed(nonce_ns=future))


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY + b" "},
        {"method": "PUT"},
        {"path": TARGET + "?x=1"},
        {"path": "/v1/submissions/2/reveal"},
    ],
)
def test_any_change_breaks_the_signature(change):
    with pytest.raises(http_auth.BadSignature):
        _verify(_signed(), **change)


def test_replay_refused():
    store = http_auth.InMemoryNonceStore()
    headers = _signed()
    _verify(headers, store=store)
    with pytest.raises(http_auth.ReplayedRequest):
        _verify(headers, store=store)


def test_defaults_come_from_settings(monkeypatch):
    from quasar.config import reset_settings_cache

    monkeypatch.setenv("AUTH_MAX_AGE_SECONDS", "1")
    reset_settings_cache()
    try:
        headers = _signed(nonce_ns=time.time_ns() - 2 * 10**9)
        with pytest.raises(http_auth.StaleRequest, match="1s"):
            verify_request(
                headers,
                BODY,
                method="POST",
                path=TARGET,
                self_hotkey=SERVER.ss58_address,
                nonce_store=http_auth.InMemoryNonceStore(),
            )
    finally:
        reset_settings_cache()


def test_every_failure_has_a_distinct_code():
    assert set(AUTH_ERROR_CODES.values()) == {
        "unsigned",
        "unsupported_crypto",
        "malformed_auth",
        "wrong_receiver",
        "stale_request",
        "bad_signature",
        "replayed_nonce",
    }
    assert all(issubclass(cls, AuthError) for cls in AUTH_ERROR_CODES)
    assert auth_error_code(Unsigned("x")) == "unsigned"
    assert auth_error_code(http_auth.ReplayedRequest("x")) == "replayed_nonce"
    assert auth_error_code(AuthError("x")) == "unauthenticated"


def test_btauth_signs_raw_target_and_body_fresh_each_time():
    seen: list[httpx.Request] = []
    store = http_auth.InMemoryNonceStore()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        caller = verify_request(
            request.headers,
            request.content,
            method=request.method,
            path=request.url.raw_path.decode(),
            self_hotkey=SERVER.ss58_address,
            nonce_store=store,
            max_age=30,
            allowed_skew=5,
        )
        return httpx.Response(200, json={"hotkey": caller.hotkey_ss58})

    auth = BtAuth(MINER, receiver=SERVER.ss58_address)
    assert auth.hotkey == MINER.ss58_address
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://api") as client:
        for _ in range(2):  # the same request twice: each send gets its own nonce
            r = client.get("/v1/leaderboard", params={"round_id": 3, "q": "a b/ü"}, auth=auth)
            assert r.json() == {"hotkey": MINER.ss58_address}
        r = client.post("/v1/submissions/commit", content=BODY, auth=auth)
        assert r.status_code == 200
    nonces = {req.headers[http_auth.HEADER_NONCE] for req in seen}
    assert len(nonces) == 3
    assert "?" in seen[0].url.raw_path.decode()


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"path": "/a b", "raw_path": b"/a%20b", "query_string": b"x=1"}, "/a%20b?x=1"),
        ({"path": "/a", "raw_path": b"/a", "query_string": b""}, "/a"),
        ({"path": "/a", "query_string": b"y=%2F"}, "/a?y=%2F"),
    ],
)
def test_asgi_request_target(scope, expected):
    assert asgi_request_target(scope) == expected
