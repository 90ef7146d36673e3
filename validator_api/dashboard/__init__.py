"""The owner's dashboard as HTML: `/` (a round), `/miners/{hotkey}`, `/validators`, and error pages.

Each `render_*` turns the plain data read by `validator_api.services.dashboard_queries` into one
self-contained HTML page: inline CSS, an inline SVG chart drawn on the server, and a few lines of
JavaScript (countdown, refresh) allowed by a per-response CSP nonce. Nothing is loaded from anywhere
else (no CDN, no web fonts), and this package runs no query of its own.

Every string that a miner or validator controls (hotkeys, repository URLs, reasons, sandboxes, logit
checks, details) goes through `parts._e` (html.escape with quotes) before it reaches the page, only
http(s) URLs become links, and a hotkey in a link is percent-encoded first.

    rounds.py      `/` and `/?round_id=N`: the round, its leaderboard, rejections and weights
    miners.py      `/miners/{hotkey}`
    validators.py  `/validators`
    chart.py       the best speed-up per round, as inline SVG
    frame.py       the page around each of them (style, script, header, footer) and the error page
    parts.py       the small pieces every page is built from (escaping, numbers, links, tables)
"""

from __future__ import annotations

from validator_api.dashboard.chart import chart_svg
from validator_api.dashboard.frame import render_error
from validator_api.dashboard.miners import render_miner
from validator_api.dashboard.rounds import render
from validator_api.dashboard.validators import render_validators
from validator_api.services.dashboard_queries import CHART_ROUNDS, DashboardData, Row

__all__ = [
    "CHART_ROUNDS",
    "DashboardData",
    "Row",
    "chart_svg",
    "render",
    "render_error",
    "render_miner",
    "render_validators",
]
