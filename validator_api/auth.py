"""Who is calling: btauth/1 signatures (via `quasar.signing`), a database nonce store, and roles.

`authenticate` verifies a request's signature and records its nonce; the roles come from the
chain's metagraph (cached by `CachedChain`): a miner is any hotkey registered on the subnet, a
validator is what `quasar.chain.roles.is_validator` says (the rule the inference gate and the
validator's start-up use too), the owner is OWNER_HOTKEY or the subnet owner the metagraph names.

A nonce is written in the transaction of the request it belongs to (`DatabaseNonceStore.on`): a
refused request rolls its work back but still commits the nonce (`validator_api.signed`), because
the record must survive the refusal (that is what makes a replay of a refused request a replay).
It is the only thing a refused request ever writes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, delete

from quasar.chain import Metagraph
from quasar.chain.roles import is_validator
from quasar.config import Settings
from quasar.signing import AuthError, NonceStore, auth_error_code, verify_request
from validator_api.db import insert_unless_exists
from validator_api.errors import ApiError
from validator_api.models import AuthNonce

Role = Literal["miner", "validator", "owner"]

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


def authenticate(
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    target: str,
    api_hotkey: str,
    nonce_store: NonceStore,
    settings: Settings,
) -> str:
    """The verified sender hotkey, or ApiError 401 with the stable code of the failure."""
    try:
        caller = verify_request(
            headers,
            body,
            method=method,
            path=target,
            self_hotkey=api_hotkey,
            nonce_store=nonce_store,
            max_age=settings.auth_max_age_seconds,
            allowed_skew=settings.auth_allowed_skew_seconds,
        )
    except AuthError as exc:
        code = auth_error_code(exc)
        raise ApiError(401, code, f"{exc}{_AUTH_HINTS.get(code, '')}") from None
    return caller.hotkey_ss58


@dataclass(frozen=True)
class Roles:
    """What a hotkey may do, from one metagraph snapshot."""

    hotkey: str
    registered: bool
    validator: bool
    owner: bool
    uid: int | None

    @classmethod
    def of(cls, hotkey: str, metagraph: Metagraph, settings: Settings) -> Roles:
        neuron = metagraph.get(hotkey)
        owner_hotkey = settings.owner_hotkey or metagraph.owner_hotkey
        return cls(
            hotkey=hotkey,
            registered=neuron is not None,
            validator=is_validator(neuron, settings.min_validator_stake),
            owner=owner_hotkey is not None and hotkey == owner_hotkey,
            uid=None if neuron is None else neuron.uid,
        )

    def require(self, role: Role, settings: Settings) -> None:
        """ApiError 403 unless this hotkey has `role`."""
        if role == "owner":
            if not self.owner:
                raise ApiError(
                    403, "not_owner", f"{self.hotkey} is not the subnet owner's hotkey (OWNER_HOTKEY)"
                )
            return
        if not self.registered:
            raise ApiError(
                403,
                "not_registered",
                f"hotkey {self.hotkey} is not registered on subnet {settings.netuid}; register it first "
                "(btcli subnet register, or `quasar chain register` on the local dev chain)",
            )
        if role == "validator" and not self.validator:
            raise ApiError(
                403,
                "not_validator",
                f"hotkey {self.hotkey} has no validator permit"
                + (
                    f" and less than MIN_VALIDATOR_STAKE={settings.min_validator_stake:g} stake"
                    if (settings.min_validator_stake or 0) > 0
                    else ""
                )
                + "; only validators may call this endpoint",
            )


def conflicted_hotkeys(validator: str, metagraph: Metagraph) -> frozenset[str]:
    """The miner hotkeys ``validator`` may not judge: its own, and every hotkey of its coldkey when
    the metagraph names coldkeys (one operator's miner and validator are one interest)."""
    neuron = metagraph.get(validator)
    coldkey = None if neuron is None else neuron.coldkey
    siblings = {n.hotkey for n in metagraph.neurons if coldkey is not None and n.coldkey == coldkey}
    return frozenset({validator, *siblings})
