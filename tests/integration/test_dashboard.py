"""The dashboard at `/` and `GET /v1/history` against a real API with finished rounds.

Rounds 1 and 2 are finalized, round 3 is open; miners reveal hostile repository URLs (quotes,
`<script>`, an event-handler attribute) that the URL policy accepts in development mode, so the
page must escape them. The Chromium test (skipped where Debian's `chromium` is not installed) loads
the page headless, finds the round, the leaderboard rows and the chart in the DOM, and saves desktop
and phone screenshots under test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ApiServer, launch

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
HOSTILE_REPO = '/tmp/q"><script>alert(1)</script>/k&amp;'
HOSTILE_HTTPS = 'https://github.com/evil/fla"onmouseover="alert(1)'
BASELINE_MS = 10.0
SANDBOX = "bwrap, cgroup v2, uid 65534, seccomp"
HOSTILE_SANDBOX = "unshare walls<img onerror=alert(2)>"


def _scored(
    api: ApiServer,
    miner,
    speedup: float | None,
    repo_url: str,
    *,
    verdict: str = "pass",
    sandbox: str = SANDBOX,
) -> int:  # type: ignore[no-untyped-def]
    sub = api.commit_and_reveal(miner, repo_url=repo_url)
    job = api.call(api.validator, "POST", "/v1/jobs/claim")
    assert job.status_code == 200, job.text
    body: dict = {
        "verdict": verdict,
        "reason": "ok" if verdict == "pass" else "incorrect",
        "baseline_ms": BASELINE_MS,
        "kernel_tree_hash": os.urandom(20).hex(),
        "sandbox": sandbox,
        "logit_check": {"verdict": "pass", "reason": "ok", "metrics": {"cosine": 0.999}},
    }
    if speedup is not None:
        body.update(median_ms=BASELINE_MS / speedup, speedup=speedup, max_rel_error=2e-3, peak_mem_mb=900.0)
    posted = api.call(api.validator, "POST", f"/v1/jobs/{job.json()['job_id']}/result", body)
    assert posted.status_code == 200, posted.text
    return int(sub["id"])


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    # Real 12-second blocks for the time-left display; the DevChain itself stays frozen.
    api = launch(
        "sqlite", tmp_path_factory.mktemp("dashboard"), None,
        validators=1, miners=4, block_time_seconds=12.0, enable_logit_verification=True,
    )  # fmt: skip
    m = api.miners
    api.new_round()
    _scored(api, m[0], 1.4, "https://github.com/alice/flash-linear-attention")
    _scored(api, m[1], 1.9, "https://github.com/bob/flash-linear-attention")
    api.new_round()
    _scored(api, m[0], 2.6, "https://github.com/alice/flash-linear-attention")
    _scored(api, m[1], 1.2, HOSTILE_HTTPS)
    api.new_round(duration_blocks=300)
    _scored(api, m[2], 3.3, "https://github.com/carol/flash-linear-attention")
    _scored(api, m[0], 2.9, "https://github.com/alice/flash-linear-attention")
    _scored(api, m[1], None, HOSTILE_REPO, verdict="fail", sandbox=HOSTILE_SANDBOX)
    api.commit_and_reveal(m[3], repo_url="https://github.com/dave/flash-linear-attention")
    api.advance(40)
    yield api
    api.stop()


def test_history_json_has_best_time_per_round(populated: ApiServer) -> None:
    rounds = populated.get("/v1/history").json()["rounds"]
    assert [r["round_id"] for r in rounds] == [1, 2, 3]
    assert [r["status"] for r in rounds] == ["finalized", "finalized", "open"]
    assert [round(r["best_ms"], 4) for r in rounds] == [round(BASELINE_MS / s, 4) for s in (1.9, 2.6, 3.3)]
    assert rounds[0]["best_hotkey"] == populated.miners[1].ss58_address
    assert rounds[2]["submissions"] == 4 and rounds[2]["baseline_ms"] == pytest.approx(BASELINE_MS)
    assert populated.get("/v1/history?limit=1").json()["rounds"][0]["round_id"] == 3
    spec = populated.get("/openapi.json").json()
    assert "/v1/history" in spec["paths"] and "RoundHistory" in spec["components"]["schemas"]


def test_page_shows_round_leaderboard_chart_and_escapes_miner_strings(populated: ApiServer) -> None:
    answer = populated.get("/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp
    page = answer.text
    assert 'data-round-id="3"' in page and 'id="time-left"' in page and "Round <span" in page
    assert len(re.findall(r"<tr class=\"(?:un)?counted\" data-submission-id=", page)) == 4
    assert page.count('class="dot best"') == 3 and "<polyline" in page
    # Hostile strings appear only escaped; no injected tag or attribute survives.
    assert "<script>alert(1)</script>" not in page and 'onmouseover="alert' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;onmouseover=&quot;alert(1)" not in page  # not on the open round's board
    assert page.count("<script") == 1  # ours, with the nonce
    assert re.search(r"<script nonce=\"[A-Za-z0-9_\-]+\">", page)
    # Nothing is loaded from elsewhere (links to miners' repositories are only links).
    assert not re.search(r"src=|<link|@import|url\(", page)
    # Each verdict says where it was reached; a validator's string is escaped like a miner's.
    assert page.count(f'<span class="sandbox" title="sandbox">{SANDBOX}</span>') == 2
    assert "<img" not in page and "unshare walls&lt;img onerror=alert(2)&gt;" in page
    board = {e["submission_id"]: e for e in populated.get("/v1/leaderboard").json()["entries"]}
    assert sorted(e["sandbox"] or "" for e in board.values()) == ["", SANDBOX, SANDBOX, HOSTILE_SANDBOX]
    round2 = populated.get("/v1/leaderboard?round_id=2").json()["entries"]
    assert any(e["hotkey"] == populated.miners[1].ss58_address for e in round2)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_dashboard_in_headless_chromium(populated: ApiServer, tmp_path: Path) -> None:
    binary = _chromium()
    assert binary is not None
    url = f"{populated.base_url}/?refresh=0"
    dom = _headless(binary, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'id="round"' in html and 'data-round-id="3"' in html
    rows = re.findall(r"<tr class=\"(?:un)?counted\" data-submission-id=\"(\d+)\"", html)
    assert len(rows) == 4
    assert '<svg id="chart"' in html and html.count('class="dot best"') == 3
    # The countdown script ran (the CSP allowed our nonce) and nothing hostile became markup.
    assert re.search(r'id="time-left">\d+m \d\ds<', html), "countdown did not render"
    assert "<script>alert(1)</script>" not in html
    ARTIFACTS.mkdir(exist_ok=True)
    for name, size in (("dashboard-desktop.png", "1280,1000"), ("dashboard-phone.png", "390,1400")):
        shot = ARTIFACTS / name
        shot.unlink(missing_ok=True)
        done = _headless(
            binary, tmp_path / f"profile-{name}", f"--window-size={size}", f"--screenshot={shot}", url
        )
        assert done.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, done.stderr[-2000:]
