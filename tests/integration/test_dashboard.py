"""The owner's dashboard (`/`, `/?round_id=N`, `/miners/{hotkey}`, `/validators`) and `GET /v1/history`
against a real API with finished rounds, on SQLite and on PostgreSQL.

Round 1 and 3 are finalized with winners; round 2 is finalized with nothing correct (a failed kernel
and a commitment never revealed), so it is a gap in the speed-up chart and burns all weight; round 4
is open, with a job retried after a validator's sandbox failed (now leased to a second validator)
and one still queued. Miners reveal hostile repository URLs (quotes, `<script>`, an event-handler
attribute) that the URL policy accepts in development mode, and a validator reports a hostile
sandbox, detail and logit-check reason, so every page must escape them. The Chromium tests (skipped
where Debian's `chromium` is not installed) load each page headless, find its parts in the DOM, and
save desktop and phone screenshots under test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from bittensor.sp_core import Keypair

from tests.integration.conftest import BACKENDS, ApiServer, launch, new_keypair

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
HOSTILE_REPO = '/tmp/q"><script>alert(1)</script>/k&amp;'
HOSTILE_HTTPS = 'https://github.com/evil/fla"onmouseover="alert(1)'
BASELINE_MS = 10.0
SANDBOX = "bwrap, cgroup v2, uid 65534, seccomp"
HOSTILE_SANDBOX = "unshare walls<img onerror=alert(2)>"
HOSTILE_DETAIL = "Traceback <b onclick=alert(4)>boom</b>"
HOSTILE_LOGIT = "<svg onload=alert(3)>"
HOSTILE_METRIC = '"><i>cos'
RAW_HOSTILE = (
    "<script>alert(1)</script>",
    'onmouseover="alert',
    "<img",
    "<svg onload",
    "<b onclick",
    "<i>cos",
)


def _claim(api: ApiServer, validator: Keypair) -> dict:  # type: ignore[type-arg]
    job = api.call(validator, "POST", "/v1/jobs/claim")
    assert job.status_code == 200, job.text
    return dict(job.json())


def _post(api: ApiServer, validator: Keypair, job_id: int, body: dict) -> None:  # type: ignore[type-arg]
    posted = api.call(validator, "POST", f"/v1/jobs/{job_id}/result", body)
    assert posted.status_code == 200, posted.text


def _scored(
    api: ApiServer,
    miner: Keypair,
    speedup: float | None,
    repo_url: str,
    *,
    verdict: str = "pass",
    reason: str = "incorrect_output",
    sandbox: str = SANDBOX,
    ci: tuple[float, float] | None = None,
    detail: str | None = None,
    logit: dict | None = None,  # type: ignore[type-arg]
) -> int:
    sub = api.commit_and_reveal(miner, repo_url=repo_url)
    job = _claim(api, api.validator)
    body: dict = {
        "verdict": verdict,
        "reason": "ok" if verdict == "pass" else reason,
        "baseline_ms": BASELINE_MS,
        "kernel_tree_hash": os.urandom(20).hex(),
        "sandbox": sandbox,
        "logit_check": logit or {"verdict": "pass", "reason": "ok", "metrics": {"cosine": 0.999}},
    }
    if speedup is not None:
        body.update(median_ms=BASELINE_MS / speedup, speedup=speedup, max_rel_error=2e-3, peak_mem_mb=900.0)
    if ci is not None:
        body.update(speedup_ci_low=ci[0], speedup_ci_high=ci[1])
    if detail is not None:
        body["detail"] = detail
    _post(api, api.validator, job["job_id"], body)
    return int(sub["id"])


@pytest.fixture(scope="module", params=BACKENDS)
def populated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    backend = request.param
    pg = (lambda: request.getfixturevalue("pg_databases")) if backend == "postgresql" else None
    # Real 12-second blocks for the time-left display; the DevChain itself stays frozen.
    api = launch(
        backend, tmp_path_factory.mktemp(f"dashboard-{backend}"), pg,
        validators=3, miners=4, block_time_seconds=12.0, enable_logit_verification=True,
    )  # fmt: skip
    m = api.miners
    api.new_round()  # 1
    _scored(api, m[0], 1.4, "https://github.com/alice/flash-linear-attention")
    _scored(api, m[1], 1.9, "https://github.com/bob/flash-linear-attention")
    api.new_round()  # 2: nothing correct, and a commitment never revealed
    _scored(api, m[3], None, "https://github.com/dave/flash-linear-attention", verdict="fail")
    api.commit(m[2])
    api.new_round()  # 3
    _scored(api, m[0], 2.6, "https://github.com/alice/flash-linear-attention")
    _scored(api, m[1], 1.2, HOSTILE_HTTPS)
    api.new_round(duration_blocks=300)  # 4, open
    _scored(api, m[2], 3.3, "https://github.com/carol/flash-linear-attention")
    _scored(api, m[0], 2.9, "https://github.com/alice/flash-linear-attention", ci=(2.7, 3.1))
    _scored(
        api, m[1], None, HOSTILE_REPO, verdict="fail", sandbox=HOSTILE_SANDBOX, detail=HOSTILE_DETAIL,
        logit={"verdict": "fail", "reason": HOSTILE_LOGIT, "metrics": {HOSTILE_METRIC: 0.5}},
    )  # fmt: skip
    # The first validator cannot build its sandbox: the job is queued again (attempt 2) and the
    # second validator holds it; another submission's job waits in the queue.
    api.commit_and_reveal(m[3], repo_url="https://github.com/dave/flash-linear-attention")
    job = _claim(api, api.validators[0])
    _post(api, api.validators[0], job["job_id"], {"verdict": "error", "reason": "sandbox_unavailable"})
    again = _claim(api, api.validators[1])
    assert (again["job_id"], again["attempt"]) == (job["job_id"], 2)
    api.commit_and_reveal(m[3], repo_url="https://github.com/dave/fla-2")
    api.advance(40)
    yield api
    api.stop()


def _assert_safe(page: str) -> None:
    """One script (ours, by nonce), nothing loaded from elsewhere, no hostile markup, only web links."""
    for raw in RAW_HOSTILE:
        assert raw not in page, raw
    assert page.count("<script") == 1 and re.search(r"<script nonce=\"[A-Za-z0-9_\-]+\">", page)
    assert not re.search(r"<link|@import|url\(|<iframe|<object", page)
    for value in re.findall(r"=\"([^\"]*)\"", page):
        assert "<" not in value and ">" not in value, value
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs and all(h.startswith(("/", "https://")) for h in hrefs), hrefs


def _html(api: ApiServer, target: str, status: int = 200) -> str:
    answer = api.get(target)
    assert answer.status_code == status, (target, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp
    _assert_safe(answer.text)
    return answer.text


def _uid(api: ApiServer, key: Keypair) -> int:
    uid = api.chain.metagraph().uid_of(key.ss58_address)
    assert uid is not None
    return uid


def test_history_json_has_best_time_per_round(populated: ApiServer) -> None:
    rounds = populated.get("/v1/history").json()["rounds"]
    assert [r["round_id"] for r in rounds] == [1, 2, 3, 4]
    assert [r["status"] for r in rounds] == ["finalized", "finalized", "finalized", "open"]
    best = [None if r["best_ms"] is None else round(r["best_ms"], 4) for r in rounds]
    assert best == [
        round(BASELINE_MS / 1.9, 4),
        None,
        round(BASELINE_MS / 2.6, 4),
        round(BASELINE_MS / 3.3, 4),
    ]
    assert rounds[0]["best_hotkey"] == populated.miners[1].ss58_address
    assert rounds[3]["submissions"] == 5 and rounds[3]["baseline_ms"] == pytest.approx(BASELINE_MS)
    assert populated.get("/v1/history?limit=1").json()["rounds"][0]["round_id"] == 4
    spec = populated.get("/openapi.json").json()
    assert "/v1/history" in spec["paths"] and "RoundHistory" in spec["components"]["schemas"]
    assert {"/miners/{hotkey}", "/validators"} <= set(spec["paths"])


def test_page_shows_round_leaderboard_chart_and_escapes_miner_strings(populated: ApiServer) -> None:
    page = _html(populated, "/")
    assert 'data-round-id="4"' in page and 'id="time-left"' in page and "Round <span" in page
    assert 'data-refresh="1"' in page  # the open round's page reloads itself
    assert len(re.findall(r"<tr class=\"(?:un)?counted\" data-submission-id=", page)) == 5
    # Hostile strings appear only escaped; no injected tag or attribute survives.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;onmouseover=&quot;alert(1)" not in page  # not on the open round's board
    assert not re.search(r"src=", page)
    # Each verdict says where it was reached; a validator's string is escaped like a miner's.
    assert page.count(f'<span class="sandbox" title="sandbox">{SANDBOX}</span>') == 2
    assert "unshare walls&lt;img onerror=alert(2)&gt;" in page
    # Miners link to their pages.
    for miner in populated.miners:
        assert f'href="/miners/{quote(miner.ss58_address, safe="")}"' in page
    # The open round's rejected submission, with its code and the sentence for it.
    rejected = page[page.index('id="rejected"') :]
    assert len(re.findall(r'<tr data-rejected-id="\d+">', rejected)) == 1
    assert "incorrect_output" in rejected and "its kernel returned wrong results" in rejected
    board = {e["submission_id"]: e for e in populated.get("/v1/leaderboard").json()["entries"]}
    assert sorted(e["sandbox"] or "" for e in board.values()) == ["", "", SANDBOX, SANDBOX, HOSTILE_SANDBOX]


def test_weights_now_and_the_last_finalized_split_per_uid_with_burn_share(populated: ApiServer) -> None:
    api, m = populated, populated.miners
    page = _html(api, "/")
    served = api.get("/v1/weights").json()
    assert served["round_id"] == 3
    card = page[page.index('id="weights-card"') :]
    assert 'data-weights-round="3"' in card and "Weights now · from round #3" in card
    expected = {_uid(api, m[0]): "60%", _uid(api, m[1]): "25%", api.settings.burn_uid: "15%"}
    assert dict(zip(served["uids"], served["weights"], strict=True)) == pytest.approx(
        {uid: float(share[:-1]) / 100 for uid, share in expected.items()}
    )
    for uid, share in expected.items():
        row = re.search(rf'<tr data-uid="{uid}">(.*?)</tr>', card)
        assert row and f">{share}<" in row.group(1), (uid, share)
    assert re.search(r'<span id="burn-share">15%</span>', card)
    assert f'<tr data-uid="{_uid(api, m[0])}">' in card and m[0].ss58_address in card
    # The split: place 1 and 2 paid to their uids, 3 and 4 earned by nobody and burned.
    places = dict(re.findall(r'<tr data-place="(\d)">(.*?)</tr>', card))
    assert m[0].ss58_address in places["1"] and f"paid to uid {_uid(api, m[0])}" in places["1"]
    assert "2.60×" in places["1"] and "60%" in places["1"]
    assert m[1].ss58_address in places["2"] and "1.20×" in places["2"]
    assert "burned: nobody earned it" in places["3"] and "burned: nobody earned it" in places["4"]


def test_a_past_round_shows_its_winner_rejected_reasons_and_weights(populated: ApiServer) -> None:
    api, m = populated, populated.miners
    first = _html(api, "/?round_id=1")
    assert 'data-round-id="1"' in first and "(a past round)" in first and 'data-refresh="0"' in first
    assert 'id="time-left"' not in first
    winner = re.search(r'<span id="winner">(.*?)</span>', first)
    assert winner and m[1].ss58_address in winner.group(1)
    assert 'data-weights-round="1"' in first and "Weights of round #1</h2>" in first
    assert '(now: round <a href="/?round_id=3">#3</a>\'s)' in first
    assert "Nothing rejected in this round." in first
    assert '<a class="pill now" href="/">current: #4</a>' in first
    assert 'class="pill on" href="/?round_id=1"' in first and 'rel="next" href="/?round_id=2"' in first

    second = _html(api, "/?round_id=2")
    assert re.search(r'<span id="winner" class="muted">nobody: all weight burned</span>', second)
    assert re.search(r'<span id="burn-share">100%</span>', second)
    rejected = second[second.index('id="rejected"') :]
    rows = dict(re.findall(r'<tr data-rejected-id="(\d+)">(.*?)</tr>', rejected))
    assert len(rows) == 2
    by_miner = {m[3].ss58_address: ("incorrect_output", "its kernel returned wrong results"),
                m[2].ss58_address: ("not_revealed", "it was never revealed")}  # fmt: skip
    for hotkey, (code, words) in by_miner.items():
        row = next(r for r in rows.values() if hotkey in r)
        assert f'<code class="code">{code}</code>' in row and words in row

    third = _html(api, "/?round_id=3")
    winner = re.search(r'<span id="winner">(.*?)</span>', third)
    assert winner and m[0].ss58_address in winner.group(1)
    assert "&quot;onmouseover=&quot;alert(1)" in third  # round 3's hostile URL, escaped


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("99", 404, "There is no round #99."),
        ("99999999999999999999", 404, "There is no round #99999999999999999999."),
        ("0", 400, "positive whole number"),
        ("-3", 400, "positive whole number"),
        ("abc", 400, "not &#x27;abc&#x27;"),
        ("1.5", 400, "positive whole number"),
        ("%3Cscript%3Ealert(1)%3C/script%3E", 400, "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ],
)
def test_a_bad_round_id_gets_a_clear_page(populated: ApiServer, query: str, status: int, words: str) -> None:
    page = _html(populated, f"/?round_id={query}", status)
    assert f'data-status="{status}"' in page and words in page and "Traceback" not in page


def test_miner_page_lists_submissions_verdicts_speedups_and_logit_checks(populated: ApiServer) -> None:
    api, m = populated, populated.miners
    page = _html(api, f"/miners/{m[1].ss58_address}")
    assert f'data-hotkey="{m[1].ss58_address}"' in page
    subs = dict(re.findall(r'<tr data-submission-id="(\d+)">(.*?)</tr>', page))
    assert len(subs) == 3
    by_round = {int(re.search(r"round_id=(\d+)", row).group(1)): row for row in subs.values()}  # type: ignore[union-attr]
    assert sorted(by_round) == [1, 3, 4]
    assert "1.90×" in by_round[1] and 'title="won the round">won<' in by_round[1]
    assert "1.20×" in by_round[3] and '<span class="ok">✓</span>' in by_round[3]
    assert '<code class="code">incorrect_output</code>' in by_round[4]
    assert "its kernel returned wrong results" in by_round[4]
    assert '<a href="/?round_id=1">#1</a>' in page  # rounds won
    # Each validator's result: verdict, speed-up, logit check (hostile reason and metric escaped), sandbox.
    results = re.findall(r'<tr data-result-of="\d+">(.*?)</tr>', page)
    assert len(results) == 3
    assert sum('<span class="badge s-pass">pass</span>' in r for r in results) == 2
    assert "&lt;svg onload=alert(3)&gt;" in page and "&quot;&gt;&lt;i&gt;cos=0.5" in page
    assert "cosine=0.999" in page
    assert "Traceback &lt;b onclick=alert(4)&gt;boom&lt;/b&gt;" in page
    assert "unshare walls&lt;img onerror=alert(2)&gt;" in page and SANDBOX in page
    assert "&quot;onmouseover=&quot;alert(1)" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # The confidence interval where the validator measured one.
    other = _html(api, f"/miners/{m[0].ss58_address}")
    assert '<span class="ci" title="95% interval">2.70–3.10</span>' in other
    assert "2.90×" in other and "2.60×" in other and "1.40×" in other


def test_unknown_hotkey_gets_a_404_page(populated: ApiServer) -> None:
    stranger = new_keypair().ss58_address
    page = _html(populated, f"/miners/{stranger}", 404)
    assert 'data-status="404"' in page and stranger in page and "Unknown miner" in page
    hostile = _html(populated, "/miners/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", 404)
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile
    assert _html(populated, "/miners/" + "x" * 300, 404).count('data-status="404"') == 1
    # A registered miner that never submitted has a page, empty.
    empty = new_keypair()
    populated.chain.register(empty.ss58_address, "miner")
    deadline = time.monotonic() + 10  # the API's metagraph is cached for METAGRAPH_TTL_SECONDS
    while populated.get(f"/miners/{empty.ss58_address}").status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    page = _html(populated, f"/miners/{empty.ss58_address}")
    assert "No submissions yet." in page


def test_validators_view_shows_activity_queue_leases_results_and_sandboxes(populated: ApiServer) -> None:
    api = populated
    v0, v1, v2 = (v.ss58_address for v in api.validators)
    page = _html(api, "/validators")
    counts = dict(re.findall(r'<span id="q-(\w+)"(?: class="[^"]*")?>(\d+)</span>', page))
    assert counts == {"queued": "1", "leased": "1", "lapsed": "0", "retried": "1", "done": "3"}
    assert "Jobs · round #4" in page and '<span id="v-active">2</span>' in page
    rows = dict(re.findall(r'<tr data-validator="([^"]+)" data-state="\w+">(.*?)</tr>', page))
    states = dict(re.findall(r'<tr data-validator="([^"]+)" data-state="(\w+)">', page))
    assert states == {v0: "recent", v1: "working", v2: "never"}
    assert '<span class="ok">6</span> / <span class="bad">2</span> / <span class="warn">1</span>' in rows[v0]
    assert re.search(r"<td class='num'>1 <span class=\"ci\">oldest 0m \d\ds</span>", rows[v1])
    assert f"{SANDBOX} <span" in rows[v0] and "unshare walls&lt;img onerror=alert(2)&gt;" in rows[v0]
    assert "(none reported)" in rows[v0]
    # The lease, its age and what is left of it.
    leases = re.findall(r'<tr data-job-id="\d+">(.*?)</tr>', page)
    assert len(leases) == 1 and v1[:5] in leases[0] and '<td class="num wide">2</td>' in leases[0]
    assert re.search(r'<td class="num lease-age">0m \d\ds</td><td>in 1[45]m \d\ds</td>', leases[0])
    # Results per validator, each with the sandbox it ran under (escaped).
    results = re.findall(r'<tr data-result-id="\d+">(.*?)</tr>', page)
    assert len(results) == 9
    assert sum(f'<td class="long result-sandbox">{SANDBOX}</td>' in r for r in results) == 7
    assert sum("unshare walls&lt;img onerror=alert(2)&gt;" in r for r in results) == 1
    error = next(r for r in results if "s-error" in r)
    assert "sandbox_unavailable" in error and "the validator could not build its sandbox" in error


def test_chart_is_in_speedup_over_each_rounds_baseline_with_gaps(populated: ApiServer) -> None:
    page = _html(populated, "/")
    chart = page[page.index('<svg id="chart"') : page.index("</svg>", page.index('<svg id="chart"'))]
    dots = {
        int(r): float(cy)
        for r, cy in re.findall(r'class="dot best" data-round-id="(\d+)" cx="[\d.]+" cy="([\d.]+)"', chart)
    }
    assert sorted(dots) == [1, 3, 4]
    # Higher speed-up is higher on the chart (smaller y): 3.3× > 2.6× > 1.9×. In ms it was the reverse.
    assert dots[4] < dots[3] < dots[1]
    for text in ("round #1: best 1.90×", "round #3: best 2.60×", "round #4: best 3.30×"):
        assert text in chart
    assert (
        re.search(r'<g class="gap" data-round-id="2">', chart)
        and "round #2: no correct timed result" in chart
    )
    # The line breaks at the gap: one segment (rounds 3-4); round 1 stands alone.
    assert chart.count("<polyline") == 1
    assert re.findall(r">([\d.]+)×</text>", chart) and "ms, lower is faster" not in page
    assert '<a href="/?round_id=3"><circle' in chart


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=90)


def _screenshots(binary: str, profile: Path, url: str, name: str, phone_height: int) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for suffix, size in (("desktop", "1280,1700"), ("phone", f"390,{phone_height}")):
        shot = ARTIFACTS / f"{name}-{suffix}.png"
        shot.unlink(missing_ok=True)
        done = _headless(binary, profile / suffix, f"--window-size={size}", f"--screenshot={shot}", url)
        assert done.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, done.stderr[-2000:]


def _pages(api: ApiServer) -> dict[str, str]:
    return {
        "dashboard": "/?refresh=0",
        "dashboard-round-2": "/?round_id=2",
        "dashboard-miner": f"/miners/{api.miners[1].ss58_address}?refresh=0",
        "dashboard-validators": "/validators?refresh=0",
    }


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
@pytest.mark.parametrize(
    "name", ["dashboard", "dashboard-round-2", "dashboard-miner", "dashboard-validators"]
)
def test_dashboard_in_headless_chromium(populated: ApiServer, tmp_path: Path, name: str) -> None:
    if populated.backend != "sqlite":
        pytest.skip("the pages are the same on PostgreSQL; one browser run is enough")
    binary = _chromium()
    assert binary is not None
    url = populated.base_url + _pages(populated)[name]
    dom = _headless(binary, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # In the DOM nothing hostile became an element or an attribute (the serialized DOM shows quotes
    # in text as they are, so the check is for tags and event-handler attributes).
    for raw in RAW_HOSTILE:
        assert raw.startswith("on") or raw not in html, raw
    assert not re.search(r"<[^>]*\son\w+=", html) and html.count("<script") == 1
    if name == "dashboard":
        assert 'id="round"' in html and 'data-round-id="4"' in html
        assert len(re.findall(r"<tr class=\"(?:un)?counted\" data-submission-id=\"(\d+)\"", html)) == 5
        assert '<svg id="chart"' in html and html.count('class="dot best"') == 3 and 'class="gap"' in html
        # The countdown script ran (the CSP allowed our nonce) and nothing hostile became markup.
        assert re.search(r'id="time-left">\d+m \d\ds<', html), "countdown did not render"
        assert (
            'id="weights"' in html
            and 'id="split"' in html
            and len(re.findall(r'<tr data-uid="\d+">', html)) == 3
        )
    elif name == "dashboard-round-2":
        assert 'data-round-id="2"' in html and len(re.findall(r'<tr data-rejected-id="\d+">', html)) == 2
        assert "it was never revealed" in html and 'id="burn-share">100%<' in html
    elif name == "dashboard-miner":
        assert len(re.findall(r'<tr data-submission-id="\d+">', html)) == 3
        assert len(re.findall(r'<tr data-result-of="\d+">', html)) == 3
    else:
        assert 'id="q-queued">1<' in html and 'id="q-leased">1<' in html
        assert len(re.findall(r'<tr data-validator="', html)) == 3 and 'class="long result-sandbox"' in html
    phone = {
        "dashboard": 2600,
        "dashboard-round-2": 2400,
        "dashboard-miner": 1800,
        "dashboard-validators": 2400,
    }
    _screenshots(binary, tmp_path / "shots", url, name, phone[name])
