"""Every refusal of the issue's list: right status, stable `code`, and nothing written but the nonce.

Each case snapshots every table (but the nonces) before and after the refused request, and counts
the nonce records: a request refused before its signature verified writes no nonce; one refused
after (role, state, payload) writes exactly its own. The bodies of commit, reveal and claim are
validated before their signature (`validator_api.signed`), so a malformed one writes no nonce.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from bittensor import http_auth

from tests.integration.conftest import ApiServer, new_keypair, reveal_material, signed_request

pytestmark = pytest.mark.timeout(120)


def assert_refused(
    api: ApiServer, send: Callable[[], httpx.Response], status: int, code: str, *, nonces: int
) -> dict[str, Any]:
    before, nonces_before = api.snapshot(), api.nonce_count()
    response = send()
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"] and "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]
    assert api.snapshot() == before, "a refused request changed the database"
    assert api.nonce_count() - nonces_before == nonces
    return dict(body)


def assert_reveal_refused_for_its_url(api: ApiServer, **payload_extra: Any) -> dict[str, Any]:
    """Commit a payload with these URLs, reach its reveal block, and check the reveal is refused
    `url_not_allowed` with nothing written but its nonce; returns the error body."""
    committed, salt, payload = api.commit(api.miner, **payload_extra)
    api.advance(api.settings.blocks_until_reveal or 0)
    target = f"/v1/submissions/{committed['submission_id']}/reveal"
    body = {"salt": salt, "payload": payload}
    return assert_refused(
        api, lambda: api.call(api.miner, "POST", target, body), 422, "url_not_allowed", nonces=1
    )


@pytest.fixture
def open_round(api: ApiServer) -> dict[str, Any]:
    """The open round of the module's server (opened if none is)."""
    current = api.get("/v1/rounds/current")
    return dict(current.json()) if current.status_code == 200 else api.new_round()


def commit_body() -> dict[str, str]:
    return {"commitment_hash": reveal_material()[0]}


# --- authentication -----------------------------------------------------------------------------
def test_unsigned(api: ApiServer, open_round: dict) -> None:
    assert_refused(
        api,
        lambda: api.call(None, "POST", "/v1/submissions/commit", commit_body()),
        401,
        "unsigned",
        nonces=0,
    )


def test_bad_signature(api: ApiServer, open_round: dict) -> None:
    def send() -> httpx.Response:
        # Sign one body, send another (one extra space).

        raw = b'{"commitment_hash": "%s"}' % reveal_material()[0].encode()
        signed = http_auth.sign(
            api.miner, method="POST", path="/v1/submissions/commit", body=raw, receiver_ss58=api.api_hotkey
        )
        tampered = raw.replace(b'"commitment_hash"', b'"commitment_hash" ')
        return httpx.post(
            api.base_url + "/v1/submissions/commit",
            content=tampered,
            headers={**signed, "content-type": "application/json"},
        )

    assert_refused(api, send, 401, "bad_signature", nonces=0)


def test_replayed_nonce(api: ApiServer, open_round: dict) -> None:
    raw = b'{"commitment_hash": "%s"}' % reveal_material()[0].encode()
    headers = {
        **http_auth.sign(
            api.miner, method="POST", path="/v1/submissions/commit", body=raw, receiver_ss58=api.api_hotkey
        ),
        "content-type": "application/json",
    }
    first = httpx.post(api.base_url + "/v1/submissions/commit", content=raw, headers=headers)
    assert first.status_code == 201
    assert_refused(
        api,
        lambda: httpx.post(api.base_url + "/v1/submissions/commit", content=raw, headers=headers),
        401,
        "replayed_nonce",
        nonces=0,
    )


def test_stale_request(api: ApiServer, open_round: dict) -> None:
    old = time.time_ns() - int(120e9)
    assert_refused(
        api,
        lambda: api.call(api.miner, "POST", "/v1/submissions/commit", commit_body(), nonce_ns=old),
        401,
        "stale_request",
        nonces=0,
    )


def test_ed25519_refused_before_verifying(api: ApiServer, open_round: dict) -> None:
    ed = new_keypair(ed25519=True)
    api.chain.register(ed.ss58_address, "miner")  # even a registered address: the scheme is refused
    assert_refused(
        api,
        lambda: api.call(ed, "POST", "/v1/submissions/commit", commit_body()),
        401,
        "unsupported_crypto",
        nonces=0,
    )


def test_wrong_receiver_and_malformed_auth(api: ApiServer, open_round: dict) -> None:
    assert_refused(
        api,
        lambda: api.call(
            api.miner, "POST", "/v1/submissions/commit", commit_body(), receiver=api.miner.ss58_address
        ),
        401,
        "wrong_receiver",
        nonces=0,
    )
    assert_refused(
        api,
        lambda: api.call(
            api.miner, "POST", "/v1/submissions/commit", commit_body(), headers={"X-Bittensor-Nonce": "soon"}
        ),
        401,
        "malformed_auth",
        nonces=0,
    )


# --- roles --------------------------------------------------------------------------------------
def test_unregistered_hotkey(api: ApiServer, open_round: dict) -> None:
    assert_refused(
        api,
        lambda: api.call(api.stranger, "POST", "/v1/submissions/commit", commit_body()),
        403,
        "not_registered",
        nonces=1,
    )


def test_miner_on_validator_route(api: ApiServer, open_round: dict) -> None:
    assert_refused(api, lambda: api.call(api.miner, "POST", "/v1/jobs/claim"), 403, "not_validator", nonces=1)


def test_non_owner_on_owner_route(api: ApiServer, open_round: dict) -> None:
    assert_refused(
        api,
        lambda: api.call(api.validator, "POST", "/v1/rounds", {"duration_blocks": 10}),
        403,
        "not_owner",
        nonces=1,
    )
    assert_refused(
        api,
        lambda: api.call(api.miner, "POST", f"/v1/rounds/{open_round['id']}/finalize"),
        403,
        "not_owner",
        nonces=1,
    )


# --- commit–reveal ------------------------------------------------------------------------------
def test_reveal_too_early_wrong_salt_payload_other_hotkey_and_too_late(
    api: ApiServer, open_round: dict
) -> None:
    committed, salt, payload = api.commit(api.miner)
    target = f"/v1/submissions/{committed['submission_id']}/reveal"
    good = {"salt": salt, "payload": payload}
    assert_refused(api, lambda: api.call(api.miner, "POST", target, good), 409, "reveal_too_early", nonces=1)
    api.advance(api.settings.blocks_until_reveal or 0)
    wrong_salt = {"salt": "00" * 32, "payload": payload}
    assert_refused(
        api, lambda: api.call(api.miner, "POST", target, wrong_salt), 400, "commitment_mismatch", nonces=1
    )
    wrong_payload = {"salt": salt, "payload": {**payload, "commit_sha": "f" * 40}}
    assert_refused(
        api, lambda: api.call(api.miner, "POST", target, wrong_payload), 400, "commitment_mismatch", nonces=1
    )
    assert_refused(
        api, lambda: api.call(api.miners[1], "POST", target, good), 403, "not_your_submission", nonces=1
    )
    api.advance((api.settings.reveal_window_blocks or 0) + 1)
    assert_refused(
        api, lambda: api.call(api.miner, "POST", target, good), 409, "reveal_window_closed", nonces=1
    )


def test_second_identical_commitment(api: ApiServer, open_round: dict) -> None:
    digest = reveal_material()[0]
    assert (
        api.call(api.miner, "POST", "/v1/submissions/commit", {"commitment_hash": digest}).status_code == 201
    )
    assert_refused(
        api,
        lambda: api.call(api.miners[1], "POST", "/v1/submissions/commit", {"commitment_hash": digest}),
        409,
        "duplicate_commitment",
        nonces=1,
    )


def test_already_revealed(api: ApiServer, open_round: dict) -> None:
    committed, salt, payload = api.commit(api.miner)
    api.advance(api.settings.blocks_until_reveal or 0)
    target = f"/v1/submissions/{committed['submission_id']}/reveal"
    assert api.call(api.miner, "POST", target, {"salt": salt, "payload": payload}).status_code == 200
    assert_refused(
        api,
        lambda: api.call(api.miner, "POST", target, {"salt": salt, "payload": payload}),
        409,
        "already_revealed",
        nonces=1,
    )


def test_commit_sha_not_40_hex(api: ApiServer, open_round: dict) -> None:
    committed, salt, payload = api.commit(api.miner)
    api.advance(api.settings.blocks_until_reveal or 0)
    target = f"/v1/submissions/{committed['submission_id']}/reveal"
    for sha in ("abc123", "G" * 40, payload["commit_sha"].upper(), payload["commit_sha"] + "0"):
        body = {"salt": salt, "payload": {**payload, "commit_sha": sha}}
        refused = assert_refused(
            api, lambda b=body: api.call(api.miner, "POST", target, b), 422, "invalid_request", nonces=0
        )
        assert "commit_sha" in refused["detail"]


def test_malformed_json_and_invalid_fields(api: ApiServer, open_round: dict) -> None:
    assert_refused(
        api,
        lambda: api.call(api.miner, "POST", "/v1/submissions/commit", b'{"commitment_hash": '),
        400,
        "malformed_json",
        nonces=0,
    )
    detail = assert_refused(
        api,
        lambda: api.call(api.miner, "POST", "/v1/submissions/commit", {"commitment_hash": "xyz"}),
        422,
        "invalid_request",
        nonces=0,
    )["detail"]
    assert "commitment_hash" in detail
    assert_refused(
        api,
        lambda: api.call(api.miner, "POST", "/v1/submissions/commit", {**commit_body(), "extra": 1}),
        422,
        "invalid_request",
        nonces=0,
    )


def test_body_over_the_size_limit(api: ApiServer, open_round: dict) -> None:
    huge = {"commitment_hash": "a" * 64, "padding": "x" * (api.settings.max_body_bytes + 10)}
    assert_refused(
        api,
        lambda: api.call(api.miner, "POST", "/v1/submissions/commit", huge),
        413,
        "body_too_large",
        nonces=0,
    )

    def chunked() -> httpx.Response:  # no Content-Length: cut off while streaming
        def chunks() -> Iterator[bytes]:
            for _ in range(api.settings.max_body_bytes // 1024 + 4):
                yield b"x" * 1024

        return httpx.post(
            api.base_url + "/v1/submissions/commit",
            content=chunks(),
            headers={"content-type": "application/json"},
        )

    assert_refused(api, chunked, 413, "body_too_large", nonces=0)


def test_unknown_round_and_submission(api: ApiServer, open_round: dict) -> None:
    assert_refused(api, lambda: api.get("/v1/rounds/987654"), 404, "round_not_found", nonces=0)
    assert_refused(api, lambda: api.get("/v1/leaderboard?round_id=987654"), 404, "round_not_found", nonces=0)
    assert_refused(
        api,
        lambda: api.call(api.owner, "POST", "/v1/rounds/987654/finalize"),
        404,
        "round_not_found",
        nonces=1,
    )
    assert_refused(api, lambda: api.get("/v1/submissions/987654"), 404, "submission_not_found", nonces=0)
    _, salt, payload = reveal_material()
    assert_refused(
        api,
        lambda: api.call(
            api.miner, "POST", "/v1/submissions/987654/reveal", {"salt": salt, "payload": payload}
        ),
        404,
        "submission_not_found",
        nonces=1,
    )


def test_round_already_open(api: ApiServer, open_round: dict) -> None:
    assert_refused(
        api,
        lambda: api.call(api.owner, "POST", "/v1/rounds", {"duration_blocks": 10}),
        409,
        "round_open",
        nonces=1,
    )


def test_commit_with_no_open_round(api: ApiServer) -> None:
    api.close_rounds()
    assert_refused(
        api,
        lambda: api.call(api.miner, "POST", "/v1/submissions/commit", commit_body()),
        409,
        "no_open_round",
        nonces=1,
    )


# --- URL policy outside development mode --------------------------------------------------------
BAD_REPO_URLS = [
    "file:///tmp/repo",
    "/tmp/repo",
    "ssh://git@github.com/miner/fla.git",
    "git@github.com:miner/fla.git",
    "http://github.com/miner/fla",
    "https://127.0.0.1/miner/fla",
    "https://10.1.2.3/miner/fla",
    "https://[::1]/miner/fla",
    "https://localhost/miner/fla",
    "https://evil.example.com/miner/fla",
]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_urls_outside_policy_in_production_mode(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, quasar_dev_mode=False)
    api.new_round()
    for url in BAD_REPO_URLS:
        refused = assert_reveal_refused_for_its_url(api, repo_url=url)
        assert "repo_url" in refused["detail"], (url, refused)
    # An inference URL on a private address is refused too; a public https repo is fine.
    assert_reveal_refused_for_its_url(api, inference_url="http://192.168.1.5:8001")
    ok = api.commit_and_reveal(api.miner)
    assert ok["status"] == "revealed"


def test_dev_mode_allows_local_repos(api: ApiServer, open_round: dict) -> None:
    assert api.settings.dev_mode
    for url in ("file:///tmp/repo", "/tmp/repo", "http://127.0.0.1:9000/repo.git"):
        assert api.commit_and_reveal(api.miner, repo_url=url)["status"] == "revealed"


def test_signed_get_with_query_verifies(api: ApiServer, open_round: dict) -> None:
    # The signed target includes the query string exactly as sent.
    response = signed_request(
        api.base_url, api.validator, "POST", "/v1/jobs/claim?wait=0", receiver=api.api_hotkey
    )
    assert response.status_code in (200, 204), response.text
