"""The owner's dashboard's database reads: what each of its pages shows, as plain data.

`validator_api/dashboard/` only renders; everything it shows is read here, one module per page:

* `rounds.gather` — `/` and `/?round_id=N`: one round, its leaderboard (its rejected submissions are
  the rows with a reason), the weights validators set and that round's split, the best speed-up per
  round; `rounds.round_history` — the chart's data, also served as JSON by `GET /v1/history`;
* `miners.miner_page` — `/miners/{hotkey}`: one hotkey's submissions across rounds and every
  validator's result on each (verdict, speed-up and interval, logit check, sandbox);
* `validators.validators_page` — `/validators`: who is at work, the job queue of the shown round,
  leases and their ages, results per validator and the sandboxes they ran under.

Every list is bounded (the newest N rows) and every count is one GROUP BY, so a page costs the same
on a subnet that has run for a year as on one that started today.
"""

from __future__ import annotations

from validator_api.services.dashboard_queries.common import NotFound
from validator_api.services.dashboard_queries.miners import MinerData, MinerSubmission, ResultView, miner_page
from validator_api.services.dashboard_queries.rounds import (
    CHART_ROUNDS,
    DashboardData,
    Row,
    SplitPlace,
    WeightShare,
    WeightsView,
    gather,
    round_history,
    weights_view,
)
from validator_api.services.dashboard_queries.validators import (
    Lease,
    QueueCounts,
    RecentResult,
    ValidatorRow,
    ValidatorsData,
    validators_page,
)

__all__ = [
    "CHART_ROUNDS",
    "DashboardData",
    "Lease",
    "MinerData",
    "MinerSubmission",
    "NotFound",
    "QueueCounts",
    "RecentResult",
    "ResultView",
    "Row",
    "SplitPlace",
    "ValidatorRow",
    "ValidatorsData",
    "WeightShare",
    "WeightsView",
    "gather",
    "miner_page",
    "round_history",
    "validators_page",
    "weights_view",
]
