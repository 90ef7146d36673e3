"""PUBLIC_CACHE_SECONDS: public GET answers served from memory for a short while, nothing else."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import ApiServer

pytestmark = pytest.mark.timeout(60)


def test_public_reads_cached_for_the_ttl_only(start_api) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api("sqlite", public_cache_seconds=1.0)
    assert api.get("/v1/rounds/current").status_code == 404  # errors are never cached
    first = api.new_round()
    seen = api.get("/v1/rounds/current")
    assert seen.status_code == 200 and seen.json()["id"] == first["id"]
    second = api.new_round()
    again = api.get("/v1/rounds/current")
    assert again.json()["id"] == first["id"]  # within the TTL: the cached answer
    assert again.headers["x-request-id"] != seen.headers["x-request-id"]  # still its own request id
    assert api.get("/v1/rounds/current?x=1").json()["id"] == second["id"]  # the query is in the key
    time.sleep(1.1)
    assert api.get("/v1/rounds/current").json()["id"] == second["id"]
    assert api.get("/health").status_code == 200


def test_cache_off_by_default(api: ApiServer) -> None:
    assert api.settings.public_cache_seconds == 0


def test_concurrent_misses_share_one_answer(start_api) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    api: ApiServer = start_api("sqlite", public_cache_seconds=5.0)
    api.new_round()
    api.commit_and_reveal()
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: api.get("/v1/leaderboard"), range(32)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert len({a.headers["x-request-id"] for a in answers}) == 32
