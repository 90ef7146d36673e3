"""Abuse limits through the real API: per-IP and per-hotkey rate limits, commitments per round.

The body size limit and the URL policy with development mode off are tested in
test_api_refusals.py (test_body_over_the_size_limit, the dev-mode-off URL tests); the policy itself
in tests/unit/test_urlpolicy.py.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from bittensor import http_auth

from tests.integration.conftest import ApiServer, reveal_material

pytestmark = pytest.mark.timeout(120)


def away_from_minute_turn(margin: float = 3.0) -> None:
    """The limits count in aligned minutes: start a burst well inside one so it cannot straddle two."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.2)


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limited" and "retry after" in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert 1 <= int(response.headers["retry-after"]) <= 60


def test_per_ip_limit(start_api) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api("sqlite", rate_limit_per_ip_per_minute=5)
    away_from_minute_turn()
    # launch() made one request (GET /v1/info) from this address, perhaps in the previous minute.
    allowed = 0
    while (refused := api.get("/v1/rounds")).status_code == 200 and allowed < 6:
        allowed += 1
    assert allowed in (4, 5)
    assert_rate_limited(refused)
    assert "RATE_LIMIT_PER_IP_PER_MINUTE" in refused.json()["detail"]
    # Signed requests from the address are refused before anything is verified or written.
    before = api.nonce_count()
    assert_rate_limited(api.call(api.validator, "POST", "/v1/jobs/claim"))
    assert api.nonce_count() == before
    # Monitoring is never limited.
    assert api.get("/health").status_code == 200 and api.get("/ready").status_code == 200
    assert api.get("/metrics").status_code == 200


def test_per_hotkey_limit_counts_only_verified_signatures(start_api) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api("sqlite", rate_limit_per_hotkey_per_minute=3)
    away_from_minute_turn()
    first, second = api.validators[0], api.validators[1]
    assert [api.call(first, "POST", "/v1/jobs/claim").status_code for _ in range(3)] == [204] * 3
    refused = api.call(first, "POST", "/v1/jobs/claim")
    assert_rate_limited(refused)
    assert "RATE_LIMIT_PER_HOTKEY_PER_MINUTE" in refused.json()["detail"]
    # Forged requests naming `second` (signed for another path) fail their signature and do not
    # spend its budget.
    for _ in range(5):
        headers = http_auth.sign(
            second, method="POST", path="/v1/jobs/other", body=b"", receiver_ss58=api.api_hotkey
        )
        forged = httpx.post(api.base_url + "/v1/jobs/claim", headers=headers, timeout=30)
        assert forged.status_code == 401 and forged.json()["code"] == "bad_signature"
    assert [api.call(second, "POST", "/v1/jobs/claim").status_code for _ in range(3)] == [204] * 3
    # Public reads need no hotkey and are not affected.
    assert api.get("/v1/rounds").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_commitments_per_round(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, max_commits_per_round=2)
    api.new_round()
    api.commit(api.miners[0])
    api.commit(api.miners[0])
    before = api.snapshot()
    digest = reveal_material()[0]
    refused = api.call(api.miners[0], "POST", "/v1/submissions/commit", {"commitment_hash": digest})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "commit_limit_reached"
    assert "MAX_COMMITS_PER_ROUND=2" in refused.json()["detail"]
    assert api.snapshot() == before  # a refused commitment writes nothing
    api.commit(api.miners[1])  # another miner has its own allowance
    api.new_round()
    api.commit(api.miners[0])  # and the allowance is per round


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_commits_cannot_pass_the_limit(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, max_commits_per_round=3)
    round_ = api.new_round()

    def commit(_: int) -> int:
        digest = reveal_material()[0]
        return api.call(api.miner, "POST", "/v1/submissions/commit", {"commitment_hash": digest}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(commit, range(10)))
    assert statuses == [201] * 3 + [409] * 7
    rows = api.snapshot()["submissions"]
    assert len([r for r in rows if round_["id"] in r]) == 3
