"""The API's side of the signed-request gate (`quasar.gate`): its database nonce store, its refusals as
`ApiError`s, and which miners a validator may not judge.

The gate verifies a request's signature, counts it against the hotkey's budget and checks its role
by `quasar.chain.roles` on the metagraph (cached by `CachedChain`); `api_error` turns its refusals
into the API's JSON errors, adding to a 401 how to sign for this API.

A nonce is written in the transaction of the request it belongs to (`DatabaseNonceStore.on`): a
refused request rolls its work back but still commits the nonce (`validator_api.signed`), because
the record must survive the refusal (that is what makes a replay of a refused request a replay).
It is the only thing a refused request ever writes.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, Engine, delete

from quasar.chain import Metagraph
from quasar.gate import Refusal
from quasar.limits import retry_after_header
from validator_api.db import insert_unless_exists
from validator_api.errors import ApiError
from validator_api.models import AuthNonce

# Nonces are kept a little past the freshness window so clock jitter between replicas cannot
# open a gap in which a replay would be accepted.
RETENTION_MARGIN_SECONDS = 5.0


class DatabaseNonceStore:
    """The `auth_nonces` table (shared by all replicas): retention, pruning, and per-transaction recorders."""

    def __init__(self, engine: Engine, *, max_age: float, allowed_skew: float) -> None:
        self._engine = engine
        # http_auth.verify refuses a store whose retention is shorter than the window it checks.
        self.retention = max_age + allowed_skew + RETENTION_MARGIN_SECONDS

    def on(self, connection: Connection) -> TransactionNonceStore:
        """A `bittensor.http_auth.NonceStore` that records into `connection`'s open transaction."""
        return TransactionNonceStore(connection, self.retention)

    def prune(self, now_ns: int | None = None) -> int:
        """Delete nonces older than the retention window (already refused as stale); returns how many."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.retention * 1e9)
        with self._engine.begin() as connection:
            result = connection.execute(delete(AuthNonce).where(AuthNonce.nonce_ns < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class TransactionNonceStore:
    """Records accepted nonces through one connection, inside the transaction it has open."""

    def __init__(self, connection: Connection, retention: float) -> None:
        self._connection = connection
        self.retention = retention

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        # ON CONFLICT DO NOTHING rather than catching the unique violation: on PostgreSQL a failed
        # statement would abort the whole transaction. A concurrent insert of the same nonce waits
        # for the first transaction and then conflicts, so exactly one request can hold a nonce.
        recorded = self._connection.execute(
            insert_unless_exists(AuthNonce.__table__, self._connection.dialect.name, "id"),
            {"hotkey": hotkey_ss58, "nonce_ns": nonce_ns},
        ).first()
        return recorded is not None


_AUTH_HINTS = {
    "unsigned": "",
    "stale_request": " Sign each request just before sending it and keep the clock in sync (NTP).",
    "replayed_nonce": " Sign every request, retries included, afresh.",
    "wrong_receiver": " Bind the signature to the API's hotkey from GET /v1/info.",
    "bad_signature": " Sign the exact method, path with query, and body bytes you send.",
}


def api_error(refusal: Refusal) -> ApiError:
    """The gate's refusal as the API's error: same status and code; a 401 says how to sign for this API."""
    detail = refusal.detail + (_AUTH_HINTS.get(refusal.code, "") if refusal.status == 401 else "")
    error = ApiError(refusal.status, refusal.code, detail)
    if refusal.retry_after is not None:
        error.headers = {"Retry-After": retry_after_header(refusal.retry_after)}
    return error


def conflicted_hotkeys(validator: str, metagraph: Metagraph) -> frozenset[str]:
    """The miner hotkeys ``validator`` may not judge: its own, and every hotkey of its coldkey when
    the metagraph names coldkeys (one operator's miner and validator are one interest)."""
    neuron = metagraph.get(validator)
    coldkey = None if neuron is None else neuron.coldkey
    siblings = {n.hotkey for n in metagraph.neurons if coldkey is not None and n.coldkey == coldkey}
    return frozenset({validator, *siblings})
