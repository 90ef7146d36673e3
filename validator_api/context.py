"""The API's long-lived parts, built once at start-up: engine, sessions, chain, identity, nonce store, gate.

`ApiContext.start()` runs in the app's lifespan (never at import): it loads or makes the API's
hotkey, opens the database and refuses a database whose schema is not current. A database that
cannot be reached at start-up is not fatal: the API serves (`/ready` says 503) and checks the
schema as soon as the database answers.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from quasar.chain import get_chain
from quasar.chain.resilient import CachedChain
from quasar.config import Settings
from quasar.gate import SignedRequestGate
from quasar.limits import FixedWindowLimiter
from quasar.wallets import WalletNotFound, load_or_create_dev_wallet, load_wallet
from validator_api.auth import DatabaseNonceStore
from validator_api.db import make_engine, make_session_factory
from validator_api.errors import ApiError
from validator_api.metrics import Metrics
from validator_api.migrate import DatabaseNotMigrated, check_current

log = logging.getLogger("validator_api")


class ApiIdentityError(RuntimeError):
    """The API's own hotkey could not be loaded; the message says how to make one."""


def load_api_hotkey(settings: Settings) -> str:
    """SS58 of the API's hotkey: made on first start on the embedded chain, loaded otherwise."""
    assert settings.wallet_path is not None
    if settings.is_embedded:
        wallet = load_or_create_dev_wallet(
            settings.api_wallet_name, settings.api_wallet_hotkey, settings.wallet_path
        )
    else:
        try:
            wallet = load_wallet(settings.api_wallet_name, settings.api_wallet_hotkey, settings.wallet_path)
        except WalletNotFound as exc:
            raise ApiIdentityError(
                f"the Validator API needs its own hotkey (API_WALLET_NAME/API_WALLET_HOTKEY): {exc}"
            ) from None
    return str(wallet.hotkey.ss58_address)


@dataclass
class ApiContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    chain: CachedChain
    nonce_store: DatabaseNonceStore
    metrics: Metrics
    api_hotkey: str = ""
    _gate: SignedRequestGate | None = None
    _schema_ok: bool = False
    _schema_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics) -> ApiContext:
        assert settings.database_url is not None
        engine = make_engine(settings.database_url)
        sessions = make_session_factory(engine)
        chain = CachedChain(
            get_chain(settings),
            metagraph_ttl_seconds=settings.metagraph_ttl_seconds,
            retry_seconds=settings.chain_retry_seconds,
            block_time_seconds=settings.block_time_seconds,
        )
        nonce_store = DatabaseNonceStore(
            engine, max_age=settings.auth_max_age_seconds, allowed_skew=settings.auth_allowed_skew_seconds
        )
        return cls(settings, engine, sessions, chain, nonce_store, metrics)

    def start(self) -> None:
        """Load the identity and check the schema; raises on an unmigrated database."""
        self.api_hotkey = load_api_hotkey(self.settings)
        self._gate = SignedRequestGate.from_settings(
            self.settings,
            receiver=self.api_hotkey,
            chain=self.chain,
            limiter=FixedWindowLimiter(self.settings.rate_limit_per_hotkey_per_minute),
            limit_setting="RATE_LIMIT_PER_HOTKEY_PER_MINUTE",
        )
        log.info(
            "Validator API hotkey %s (netuid %s, %s)",
            self.api_hotkey,
            self.settings.netuid,
            self.settings.subtensor_network,
        )
        try:
            self.ensure_schema()
        except DBAPIError as exc:
            log.warning(
                "database unreachable at start-up (%s); serving with /ready = 503 until it answers",
                type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
            )

    @property
    def gate(self) -> SignedRequestGate:
        """The signed-request gate, addressed to the API's hotkey (there from `start()` on)."""
        assert self._gate is not None, "ApiContext.start() builds the gate"
        return self._gate

    def ensure_schema(self) -> None:
        """Check once per process that the schema is current (DatabaseNotMigrated if not)."""
        if self._schema_ok:
            return
        with self._schema_lock:
            if not self._schema_ok:
                check_current(self.engine)
                self._schema_ok = True

    def require_schema(self) -> None:
        """ensure_schema for request paths: an out-of-date schema is a 503 that names the fix."""
        try:
            self.ensure_schema()
        except DatabaseNotMigrated as exc:
            raise ApiError(503, "database_not_migrated", str(exc)) from None

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            self.ensure_schema()
        except (DBAPIError, DatabaseNotMigrated):
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()
