"""The whole protocol through raw signed HTTP, on SQLite and PostgreSQL:
commit → reveal → claim → result → leaderboard → finalize → weights, plus the job life cycle."""

from __future__ import annotations

import os

import pytest

from tests.integration.conftest import ApiServer

pytestmark = pytest.mark.timeout(120)


def result_body(
    verdict: str = "pass", *, speedup: float = 2.0, tree: str | None = None, **extra: object
) -> dict:
    body: dict = {
        "verdict": verdict,
        "reason": "ok" if verdict == "pass" else ("incorrect" if verdict == "fail" else "oom"),
        "median_ms": 1.0,
        "baseline_ms": speedup,
        "speedup": speedup,
        "max_rel_error": 1e-3,
        "peak_mem_mb": 100.0,
        "kernel_tree_hash": tree or os.urandom(20).hex(),
    }
    body.update(extra)
    return body


def claim(api: ApiServer, validator) -> dict:  # type: ignore[no-untyped-def]
    response = api.call(validator, "POST", "/v1/jobs/claim")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_full_round_through_signed_http(api: ApiServer) -> None:
    rnd = api.new_round()
    assert rnd["status"] == "open" and rnd["winner_hotkey"] is None
    assert api.get("/v1/rounds/current").json()["id"] == rnd["id"]
    assert api.get("/get_current_round").json() == api.get("/v1/rounds/current").json()

    winner, second = api.miners[0], api.miners[1]
    committed, salt, payload = api.commit(winner)
    assert committed["round_id"] == rnd["id"]
    assert committed["reveal_block"] == committed["commit_block"] + api.settings.blocks_until_reveal
    assert committed["reveal_deadline_block"] == committed["reveal_block"] + api.settings.reveal_window_blocks
    sid = committed["submission_id"]
    assert api.get(f"/v1/submissions/{sid}").json()["status"] == "committed"

    api.advance(api.settings.blocks_until_reveal or 0)
    revealed = api.call(winner, "POST", f"/v1/submissions/{sid}/reveal", {"salt": salt, "payload": payload})
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["status"] == "revealed" and revealed.json()["repo_url"] == payload["repo_url"]

    job = claim(api, api.validators[0])
    assert job["submission_id"] == sid and job["commit_sha"] == payload["commit_sha"]
    assert (
        job["miner_hotkey"] == winner.ss58_address and job["lease_seconds"] == api.settings.job_lease_seconds
    )
    assert api.get(f"/v1/submissions/{sid}").json()["status"] == "evaluating"
    # The only job is taken: the next validator gets 204.
    assert api.call(api.validators[1], "POST", "/v1/jobs/claim").status_code == 204

    beat = api.call(api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/heartbeat")
    assert beat.status_code == 200 and beat.json()["job_id"] == job["job_id"]

    posted = api.call(api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/result", result_body(speedup=3.0))
    assert posted.status_code == 200, posted.text
    assert posted.json()["submission_status"] == "scored" and posted.json()["requeued"] is False
    sub = api.get(f"/v1/submissions/{sid}").json()
    assert sub["status"] == "scored" and sub["score"] == pytest.approx(3.0)

    # A second miner: slower, but still above the margin.
    other = api.commit_and_reveal(second)
    job2 = claim(api, api.validators[1])
    assert job2["submission_id"] == other["id"]
    assert (
        api.call(
            api.validators[1], "POST", f"/v1/jobs/{job2['job_id']}/result", result_body(speedup=1.5)
        ).status_code
        == 200
    )

    board = api.get("/v1/leaderboard").json()
    assert board["round_id"] == rnd["id"]
    assert [(e["hotkey"], e["rank"], e["counted"]) for e in board["entries"]] == [
        (winner.ss58_address, 1, True),
        (second.ss58_address, 2, True),
    ]
    # The lower median of the two validators' baselines: neither can lift it.
    assert api.get(f"/v1/rounds/{rnd['id']}").json()["baseline_ms"] == pytest.approx(1.5)

    done = api.call(api.owner, "POST", f"/v1/rounds/{rnd['id']}/finalize")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "finalized" and done.json()["winner_hotkey"] == winner.ss58_address
    # Finalizing again changes nothing.
    assert api.call(api.owner, "POST", f"/v1/rounds/{rnd['id']}/finalize").json() == done.json()

    weights = api.get("/v1/weights").json()
    metagraph = api.chain.metagraph()
    uid = {n.hotkey: n.uid for n in metagraph.neurons}
    assert weights["round_id"] == rnd["id"]
    shares = dict(zip(weights["uids"], weights["weights"], strict=True))
    assert shares[uid[winner.ss58_address]] == pytest.approx(0.60)
    assert shares[uid[second.ss58_address]] == pytest.approx(0.25)
    assert shares[api.settings.burn_uid] == pytest.approx(0.15)
    assert sum(weights["weights"]) == pytest.approx(1.0)
    assert weights["hotkeys"][weights["uids"].index(uid[winner.ss58_address])] == winner.ss58_address
    assert api.get("/get_weights").json() == weights
    assert api.get("/v1/rounds/current").status_code == 404

    listed = api.get("/v1/rounds?limit=1").json()
    assert listed["items"][0]["id"] == rnd["id"] and listed["limit"] == 1 and listed["total"] >= 1


def test_margin_logit_and_no_winner_go_to_burn(start_api) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api("sqlite", enable_logit_verification=True, win_margin=0.10)
    assert api.get("/v1/weights").json()["uids"] == [api.settings.burn_uid]  # before any round
    rnd = api.new_round()
    slow = api.commit_and_reveal(api.miners[0])  # beats the baseline, not the margin
    unverified = api.commit_and_reveal(api.miners[1])  # fast, but its logits fail
    for validator in api.validators[:2]:
        job = claim(api, validator)
        body = (
            result_body(speedup=1.05, logit_check={"verdict": "pass"})
            if job["submission_id"] == slow["id"]
            else result_body(speedup=5.0, logit_check={"verdict": "fail", "reason": "cosine"})
        )
        assert api.call(validator, "POST", f"/v1/jobs/{job['job_id']}/result", body).status_code == 200
    entries = api.get("/v1/leaderboard").json()["entries"]
    assert {e["submission_id"]: e["counted"] for e in entries} == {slow["id"]: False, unverified["id"]: False}
    assert {e["submission_id"]: e["verified"] for e in entries} == {slow["id"]: True, unverified["id"]: False}
    done = api.call(api.owner, "POST", f"/v1/rounds/{rnd['id']}/finalize").json()
    assert done["winner_hotkey"] is None
    weights = api.get("/v1/weights").json()
    assert weights == {
        "round_id": rnd["id"],
        "uids": [0],
        "weights": [1.0],
        "hotkeys": [weights["hotkeys"][0]],
    }
    assert weights["hotkeys"][0] is not None  # the burn uid's registered hotkey


def test_job_errors_requeue_then_unevaluable(start_api) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api("sqlite", max_job_attempts=2, validators=3)
    api.new_round()
    sub = api.commit_and_reveal()
    first = claim(api, api.validators[0])
    error = result_body("error")
    answer = api.call(api.validators[0], "POST", f"/v1/jobs/{first['job_id']}/result", error)
    assert answer.status_code == 200 and answer.json()["requeued"] is True
    # Identical retry: the same answer, nothing new.
    again = api.call(api.validators[0], "POST", f"/v1/jobs/{first['job_id']}/result", error)
    assert again.status_code == 200 and again.json() == answer.json()
    # The validator that errored never gets the job back; another one does, at attempt 2.
    assert api.call(api.validators[0], "POST", "/v1/jobs/claim").status_code == 204
    second = claim(api, api.validators[1])
    assert second["job_id"] == first["job_id"] and second["attempt"] == 2
    final = api.call(api.validators[1], "POST", f"/v1/jobs/{second['job_id']}/result", error)
    assert final.status_code == 200 and final.json()["requeued"] is False
    state = api.get(f"/v1/submissions/{sub['id']}").json()
    assert state["status"] == "rejected" and state["reason"] == "unevaluable"
    assert api.call(api.validators[2], "POST", "/v1/jobs/claim").status_code == 204


def test_sandbox_failures_never_count_toward_unevaluable(start_api) -> None:  # type: ignore[no-untyped-def]
    # A validator that could not build its sandbox never ran the submission: with one attempt
    # allowed, two such errors still leave the job to a third validator, whose verdict counts.
    api: ApiServer = start_api("sqlite", max_job_attempts=1, validators=3)
    api.new_round()
    sub = api.commit_and_reveal()
    no_sandbox = {
        **result_body("error"),
        "reason": "sandbox_unavailable",
        "detail": "bwrap: setting up uid map",
    }
    for attempt, validator in enumerate(api.validators[:2], start=1):
        job = claim(api, validator)
        assert job["attempt"] == attempt
        answer = api.call(validator, "POST", f"/v1/jobs/{job['job_id']}/result", no_sandbox)
        assert answer.status_code == 200 and answer.json()["requeued"] is True, answer.text
        assert api.get(f"/v1/submissions/{sub['id']}").json()["status"] == "evaluating"
    job = claim(api, api.validators[2])
    body = {**result_body(speedup=2.0), "sandbox": "unshare walls, cgroup v1, uid 65534, seccomp"}
    final = api.call(api.validators[2], "POST", f"/v1/jobs/{job['job_id']}/result", body)
    assert final.status_code == 200 and final.json()["requeued"] is False
    state = api.get(f"/v1/submissions/{sub['id']}").json()
    assert state["status"] == "scored" and state["sandbox"] == "unshare walls, cgroup v1, uid 65534, seccomp"
    # Any other error still counts: with one attempt allowed, it ends the job.
    api.new_round()
    other = api.commit_and_reveal(api.miners[1])
    job = claim(api, api.validators[0])
    answer = api.call(api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/result", result_body("error"))
    assert answer.json()["requeued"] is False
    assert api.get(f"/v1/submissions/{other['id']}").json()["reason"] == "unevaluable"


def test_results_idempotent_conflicts_and_duplicates(api: ApiServer) -> None:
    api.new_round()
    tree = os.urandom(20).hex()
    original = api.commit_and_reveal(api.miners[0])
    job = claim(api, api.validators[0])
    body = result_body(speedup=2.0, tree=tree)
    first = api.call(api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/result", body)
    assert first.status_code == 200
    before = api.snapshot()
    again = api.call(api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/result", body)
    assert again.status_code == 200 and again.json() == first.json()
    assert api.snapshot() == before
    changed = api.call(
        api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/result", result_body("fail", tree=tree)
    )
    assert changed.status_code == 409 and changed.json()["code"] == "result_conflict"
    other = api.call(api.validators[1], "POST", f"/v1/jobs/{job['job_id']}/result", body)
    assert other.status_code == 403 and other.json()["code"] == "not_your_job"
    assert api.snapshot() == before

    # A later submission of the same kernel tree by another hotkey is a duplicate of the first.
    copy = api.commit_and_reveal(api.miners[1])
    job2 = claim(api, api.validators[1])
    assert job2["submission_id"] == copy["id"]
    api.call(
        api.validators[1], "POST", f"/v1/jobs/{job2['job_id']}/result", result_body(speedup=9.0, tree=tree)
    )
    copied = api.get(f"/v1/submissions/{copy['id']}").json()
    assert copied["status"] == "duplicate" and copied["duplicate_of"] == original["id"]
    entries = {e["submission_id"]: e for e in api.get("/v1/leaderboard").json()["entries"]}
    assert entries[original["id"]]["rank"] == 1 and entries[copy["id"]]["counted"] is False
    assert api.call(api.validators[2], "POST", "/v1/jobs/999999/heartbeat").json()["code"] == "job_not_found"
    missing = api.call(api.validators[2], "POST", "/v1/jobs/999999/result", body)
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"
    api.close_rounds()


def test_a_submission_is_found_by_its_commitment_hash(api: ApiServer) -> None:
    api.new_round()
    committed, salt, payload = api.commit(api.miners[0])
    digest = api.get(f"/v1/submissions/{committed['submission_id']}").json()["commitment_hash"]
    found = api.get(f"/v1/submissions/by-commitment/{digest}")
    assert found.status_code == 200, found.text
    assert found.json() == api.get(f"/v1/submissions/{committed['submission_id']}").json()
    assert found.json()["status"] == "committed" and found.json()["hotkey"] == api.miners[0].ss58_address

    api.advance(api.settings.blocks_until_reveal or 0)
    target = f"/v1/submissions/{committed['submission_id']}/reveal"
    assert api.call(api.miners[0], "POST", target, {"salt": salt, "payload": payload}).status_code == 200
    assert api.get(f"/v1/submissions/by-commitment/{digest}").json()["status"] == "revealed"

    # An unknown hash is the API's usual 404; a malformed one its usual 422. Neither writes anything.
    before = api.snapshot()
    unknown = "0" * 64 if digest != "0" * 64 else "1" * 64
    missing = api.get(f"/v1/submissions/by-commitment/{unknown}")
    assert missing.status_code == 404
    assert missing.json() == {
        "code": "submission_not_found",
        "detail": f"no submission with commitment hash {unknown}",
        "request_id": missing.headers["x-request-id"],
    }
    for bad in (digest.upper(), digest[:-1], "g" * 64):
        refused = api.get(f"/v1/submissions/by-commitment/{bad}")
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_request", refused.text
        assert "commitment_hash" in refused.json()["detail"]
    assert api.snapshot() == before
    api.close_rounds()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_speedup_counts_only_when_its_interval_clears_the_margin(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, miners=5)
    api.new_round()
    bodies = {
        "clear": result_body(speedup=1.5, speedup_ci_low=1.3, speedup_ci_high=1.7, inconclusive=False),
        "straddles": result_body(speedup=1.5, speedup_ci_low=0.9, speedup_ci_high=2.0, inconclusive=False),
        "inconclusive": result_body(speedup=1.6, speedup_ci_low=1.2, speedup_ci_high=2.0, inconclusive=True),
        # A result from before intervals existed is judged by its speed-up alone.
        "no_interval": result_body(speedup=1.2),
    }
    ids = {}
    for (name, body), miner in zip(bodies.items(), api.miners[: len(bodies)], strict=True):
        ids[name] = api.commit_and_reveal(miner)["id"]
        job = claim(api, api.validators[0])
        answer = api.call(api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/result", body)
        assert answer.status_code == 200, answer.text
    entries = {e["submission_id"]: e for e in api.get("/v1/leaderboard").json()["entries"]}
    counted = {name for name, sid in ids.items() if entries[sid]["counted"]}
    assert counted == {"clear", "no_interval"}
    clear = entries[ids["clear"]]
    assert (clear["score_ci_low"], clear["score_ci_high"], clear["inconclusive"]) == (1.3, 1.7, False)
    assert entries[ids["inconclusive"]]["inconclusive"] is True

    # An interval upside down is refused, and nothing is written.
    api.commit_and_reveal(api.miners[len(bodies)])
    job = claim(api, api.validators[0])
    before = api.snapshot()
    bad = result_body(speedup=1.5, speedup_ci_low=1.7, speedup_ci_high=1.3)
    answer = api.call(api.validators[0], "POST", f"/v1/jobs/{job['job_id']}/result", bad)
    assert answer.status_code == 422, answer.text
    assert api.snapshot() == before
