"""Odd but small requests an attacker client sent (development mode off): each refused, none a 500.

Non-finite numbers in a body, JSON nested past the depth limit, URLs that outgrow their column once
normalised, control characters in a logged path, and the usual spellings of a PostgreSQL
DATABASE_URL. Numbers already stored as inf/nan (before the schema refused them) must not break a
read: they read as no number.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from quasar.logging_setup import TEXT_FORMAT
from quasar.schemas import MAX_JSON_DEPTH
from tests.integration.conftest import ApiServer, PostgresDatabases
from tests.integration.test_api_refusals import assert_refused, assert_reveal_refused_for_its_url

pytestmark = pytest.mark.timeout(180)


def result_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "verdict": "pass",
        "reason": "ok",
        "median_ms": 1.0,
        "baseline_ms": 2.0,
        "speedup": 2.0,
        "max_rel_error": 1e-3,
        "peak_mem_mb": 100.0,
        "kernel_tree_hash": os.urandom(20).hex(),
    }
    body.update(extra)
    return body


def with_raw(body: dict[str, Any], field: str, raw_json: str) -> bytes:
    """`body` as JSON with `field` written as `raw_json` (json.dumps never writes 1e400)."""
    return json.dumps({**body, field: "@RAW@"}).replace('"@RAW@"', raw_json).encode()


def held_job(api: ApiServer) -> dict[str, Any]:
    """A job that api.validator holds, of a fresh revealed submission in an open round."""
    if api.get("/v1/rounds/current").status_code != 200:
        api.new_round()
    api.commit_and_reveal(api.miner)
    claimed = api.call(api.validator, "POST", "/v1/jobs/claim")
    assert claimed.status_code == 200, claimed.text
    return dict(claimed.json())


# --- item 3: non-finite numbers -----------------------------------------------------------------
NON_FINITE = [
    ("median_ms", "1e400"),
    ("baseline_ms", "Infinity"),
    ("speedup", "NaN"),
    ("speedup_ci_low", "-Infinity"),
    ("max_rel_error", "1e999"),
    ("peak_mem_mb", "NaN"),
    ("logit_check", '{"verdict": "pass", "metrics": {"kl": Infinity}}'),
    ("logit_check", '{"verdict": "pass", "metrics": {"kl": 1e400}}'),
    ("report", '{"timings": [1.0, {"p99": NaN}]}'),
    ("report", '{"deep": {"er": {"still": [-1e400]}}}'),
]


def test_non_finite_numbers_in_a_result_are_refused(api: ApiServer) -> None:
    job = held_job(api)
    target = f"/v1/jobs/{job['job_id']}/result"
    for field, raw in NON_FINITE:
        body = with_raw(result_body(), field, raw)
        refused = assert_refused(
            api, lambda b=body: api.call(api.validator, "POST", target, b), 422, "invalid_request", nonces=1
        )
        assert "finite" in refused["detail"] and field in refused["detail"], (field, refused)
        assert "\n" not in refused["detail"]
    # Nothing was taken: the job is still held, and a finite result is accepted.
    accepted = api.call(
        api.validator, "POST", target, result_body(logit_check={"verdict": "pass", "metrics": {"kl": 0.1}})
    )
    assert accepted.status_code == 200, accepted.text


def test_non_finite_numbers_in_other_bodies_are_refused(api: ApiServer) -> None:
    if api.get("/v1/rounds/current").status_code != 200:
        api.new_round()
    body = b'{"duration_blocks": 10, "target_shape": {"batch": Infinity}}'
    refused = assert_refused(
        api, lambda: api.call(api.owner, "POST", "/v1/rounds", body), 422, "invalid_request", nonces=1
    )
    assert "finite" in refused["detail"]


def score_all(api: ApiServer, submission_ids: set[int]) -> None:
    """Claim and pass the jobs of `submission_ids` (one validator each), as validators would."""
    pending = set(submission_ids)
    for validator in api.validators * 3:
        if not pending:
            return
        claimed = api.call(validator, "POST", "/v1/jobs/claim")
        if claimed.status_code == 204:
            continue
        job = claimed.json()
        posted = api.call(validator, "POST", f"/v1/jobs/{job['job_id']}/result", result_body())
        assert posted.status_code == 200, posted.text
        pending.discard(job["submission_id"])
    assert not pending, f"no validator could take the jobs of {pending}"


def test_numbers_stored_as_inf_or_nan_read_as_no_number(api: ApiServer) -> None:
    # Rows written before the schema refused non-finite numbers: the dashboard, leaderboard, history,
    # submission and weights must still answer, and an infinite score must not win.
    rnd = api.new_round()
    inf_sub, nan_sub, good_sub = (api.commit_and_reveal(m) for m in api.miners[:3])
    score_all(api, {inf_sub["id"], nan_sub["id"], good_sub["id"]})
    with api.engine.begin() as conn:
        spoil = text(
            "UPDATE submissions SET score = :bad, score_ci_low = :bad, score_ci_high = :bad, median_ms = :bad "
            "WHERE id = :id"
        )
        conn.execute(spoil, {"bad": math.inf, "id": inf_sub["id"]})
        conn.execute(spoil, {"bad": math.nan, "id": nan_sub["id"]})
        conn.execute(
            text("UPDATE rounds SET baseline_ms = :ms WHERE id = :id"), {"ms": math.inf, "id": rnd["id"]}
        )
        conn.execute(
            text("UPDATE results SET speedup = :ms, median_ms = :ms WHERE submission_id = :id"),
            {"ms": math.inf, "id": inf_sub["id"]},
        )

    try:
        page = api.get("/")
        assert page.status_code == 200, page.text
        for shown in ("inf×", "nan×", "inf ms", "nan ms"):
            assert shown not in page.text

        board = api.get(f"/v1/leaderboard?round_id={rnd['id']}")
        assert board.status_code == 200, board.text
        entries = {e["submission_id"]: e for e in board.json()["entries"]}
        assert entries[good_sub["id"]]["rank"] == 1 and entries[good_sub["id"]]["counted"]
        for bad in (inf_sub, nan_sub):
            entry = entries[bad["id"]]
            assert (entry["rank"], entry["counted"], entry["score"], entry["median_ms"]) == (
                None,
                False,
                None,
                None,
            )
            assert api.get(f"/v1/submissions/{bad['id']}").json()["score"] is None

        history = api.get("/v1/history")
        assert history.status_code == 200, history.text
        mine = next(r for r in history.json()["rounds"] if r["round_id"] == rnd["id"])
        assert (mine["baseline_ms"], mine["best_ms"], mine["best_hotkey"]) == (None, 1.0, good_sub["hotkey"])

        finalized = api.call(api.owner, "POST", f"/v1/rounds/{rnd['id']}/finalize")
        assert finalized.status_code == 200, finalized.text
        assert finalized.json()["winner_hotkey"] == good_sub["hotkey"]
        weights = api.get("/v1/weights")
        assert weights.status_code == 200, weights.text
        assert inf_sub["hotkey"] not in weights.json()["hotkeys"]
        assert api.get("/").status_code == 200
    finally:
        # PostgreSQL keeps a NaN (SQLite stores NULL), and NaN != NaN would make every later snapshot
        # of this module's server differ: put no number back.
        with api.engine.begin() as conn:
            conn.execute(spoil, {"bad": None, "id": nan_sub["id"]})


# --- item 4: deep JSON and URLs that grow when normalised ---------------------------------------
def nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def test_deeply_nested_report_is_refused(api: ApiServer) -> None:
    job = held_job(api)
    target = f"/v1/jobs/{job['job_id']}/result"
    for levels in (MAX_JSON_DEPTH, 900):  # the body itself is one level, so MAX_JSON_DEPTH is one too many
        body = with_raw(result_body(), "report", nested(levels))
        assert len(body) < api.settings.max_body_bytes
        refused = assert_refused(
            api, lambda b=body: api.call(api.validator, "POST", target, b), 422, "invalid_request", nonces=1
        )
        assert f"{MAX_JSON_DEPTH} levels" in refused["detail"], refused
    # Deeper than Python's JSON parser goes, still under the body limit: a 400, not a 500.
    too_deep = with_raw(result_body(), "report", "[" * 30_000 + "]" * 30_000)
    response = api.call(api.validator, "POST", target, too_deep)
    assert response.status_code == 400 and response.json()["code"] == "bad_request", response.text
    # Exactly at the limit is fine.
    ok = api.call(
        api.validator, "POST", target, with_raw(result_body(), "report", nested(MAX_JSON_DEPTH - 1))
    )
    assert ok.status_code == 200, ok.text


def long_urls() -> list[tuple[str, str]]:
    path = "/miner/" + "r" * 400
    return [
        # 501 characters that IDNA turns into a host of ~1,900 ("ñ." is "xn--ida.").
        ("https://" + "ñ." * 236 + "github.com/miner/fla", "253"),
        # An ASCII host over 253 characters.
        ("https://" + "a." * 130 + "github.com/miner/fla", "253"),
        # One label over 63 characters.
        ("https://" + "a" * 64 + ".github.com/miner/fla", "63"),
        # Host fine (250 characters once encoded), but the whole URL passes 512 once normalised.
        ("https://" + "ñ." * 30 + "github.com" + path, "512"),
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_urls_that_outgrow_their_column_when_normalised(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, quasar_dev_mode=False)
    api.new_round()
    for url, limit in long_urls():
        assert len(url) <= 512, len(url)
        refused = assert_reveal_refused_for_its_url(api, repo_url=url)
        assert "repo_url" in refused["detail"] and limit in refused["detail"], (url, refused)
        assert "\n" not in refused["detail"] and len(refused["detail"]) < 300, refused
    # The same for an inference URL.
    refused = assert_reveal_refused_for_its_url(api, inference_url="https://" + "ñ." * 236 + "example.com")
    assert "inference_url" in refused["detail"]
    assert (
        api.commit_and_reveal(api.miner, repo_url="https://" + "ñ." * 20 + "github.com/m/f")["status"]
        == "revealed"
    )


# --- item 5: log forging ------------------------------------------------------------------------
def test_control_characters_in_a_path_cannot_forge_access_log_lines(
    api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="validator_api.access")
    forged = "2026-01-01 00:00:00,000 INFO validator_api.access: POST /v1/rounds 201 1.0ms request_id=x"
    path = "/v1/nothing%0d%0a" + forged.replace(" ", "%20") + "%1b[2K%e2%80%a8%5cn"
    response = httpx.get(api.base_url + path, headers={"x-request-id": "forge-test-1"}, timeout=10)
    assert response.status_code == 404
    records = [
        r for r in caplog.records if r.name == "validator_api.access" and "forge-test-1" in r.getMessage()
    ]
    assert len(records) == 1
    line = logging.Formatter(TEXT_FORMAT).format(records[0])
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    # Escaped, not dropped: the line still says what was asked for, and a literal backslash is
    # escaped too so that "\n" in a path cannot pass for an escaped newline.
    assert "/v1/nothing\\r\\n2026-01-01" in line and "\\x1b[2K" in line and "\\u2028" in line
    assert "\\\\n" in line


# --- item 7: DATABASE_URL spellings -------------------------------------------------------------
def quasar_cli(*args: str, cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_URL", "SUBTENSOR"))}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "quasar.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"])
def test_every_spelling_of_a_postgresql_url_works(
    scheme: str,
    start_api,
    pg_databases: PostgresDatabases,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    url = scheme + "://" + pg_databases.create().split("://", 1)[1]
    # The migrations, through the CLI (as an operator runs them) ...
    migrated = quasar_cli("db", "upgrade", cwd=tmp_path, database_url=url)
    assert migrated.returncode == 0, migrated.stderr
    assert "Traceback" not in migrated.stderr
    # ... and the API on the same URL.
    api: ApiServer = start_api("postgresql", database_url=url, migrate=False)
    assert api.settings.database_url is not None and api.settings.database_url.startswith(
        "postgresql+psycopg://"
    )
    assert api.get("/ready").status_code == 200
    assert api.new_round()["status"] == "open"


@pytest.mark.parametrize(
    "url",
    ["mysql://quasar:hunter2@db/quasar", "postgresql+asyncpg://quasar:hunter2@db/q", "db.example.com:5432/q"],
)
def test_an_unusable_database_url_is_refused_in_one_line(url: str, tmp_path: Path) -> None:
    commands = (("db", "upgrade"), ("api",))
    # Both at once: each is a fresh interpreter whose start-up (imports) is most of its time.
    with ThreadPoolExecutor(len(commands)) as pool:
        outs = list(pool.map(lambda command: quasar_cli(*command, cwd=tmp_path, database_url=url), commands))
    for command, out in zip(commands, outs, strict=True):
        assert out.returncode == 2, (command, out.stderr)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, out.stderr
        assert "DATABASE_URL" in lines[0] and "postgresql://" in lines[0], lines[0]
        assert "hunter2" not in out.stderr and "Traceback" not in out.stderr
