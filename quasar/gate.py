"""The signed-request gate of both servers that take signed calls: the Validator API and the miner's inference server.

`SignedRequestGate.admit` runs the checks in this order, each failure a `Refusal`:

1. `authenticate`: the btauth/1 signature (`quasar.signing`, i.e. bittensor's `http_auth`) addressed to
   this server's hotkey, its nonce recorded in the store the server passes in (401, the code of the
   failure from `quasar.signing.AUTH_ERROR_CODES`);
2. the caller's request budget (`quasar.limits`), counted only after the signature verifies so nobody
   can spend another hotkey's budget (429 ``rate_limited``, with the seconds to wait);
3. the role the call needs, by the rules of `quasar.chain.roles` on the cached metagraph (403
   ``not_registered``, ``not_validator``, ``not_owner``).

The gate knows no web framework: each server turns a `Refusal` into its own HTTP error body. A
chain that cannot be read raises `ChainUnavailable` unchanged, since whether a request refused for
that keeps its nonce is the server's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from quasar.chain.base import Metagraph
from quasar.chain.roles import Role, Roles
from quasar.limits import Limiter, rate_limit_detail
from quasar.signing import AuthError, NonceStore, auth_error_code, verify_request

if TYPE_CHECKING:
    from quasar.config import Settings


class Refusal(Exception):
    """A request a server will not serve: an HTTP ``status``, a stable ``code`` and a ``detail`` that says
    what to do; ``retry_after`` (seconds) when waiting is the fix."""

    def __init__(self, status: int, code: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class MetagraphSource(Protocol):
    """Where the gate reads roles: a `quasar.chain.resilient.CachedChain` in both servers."""

    def metagraph(self) -> Metagraph: ...


@dataclass(frozen=True)
class SignedRequestGate:
    """Authenticates a signed request, counts it against its caller's budget and checks the caller's role."""

    receiver: str  # this server's hotkey: a request must be addressed to it
    chain: MetagraphSource
    netuid: int
    min_validator_stake: float | None
    owner_hotkey: str | None  # OWNER_HOTKEY; None: the subnet owner the metagraph names
    max_age: float
    allowed_skew: float
    limiter: Limiter | None = None
    limit_setting: str = ""  # the setting that sizes `limiter`, named in its refusals

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        receiver: str,
        chain: MetagraphSource,
        limiter: Limiter | None = None,
        limit_setting: str = "",
    ) -> SignedRequestGate:
        return cls(
            receiver=receiver,
            chain=chain,
            netuid=settings.netuid,
            min_validator_stake=settings.min_validator_stake,
            owner_hotkey=settings.owner_hotkey,
            max_age=settings.auth_max_age_seconds,
            allowed_skew=settings.auth_allowed_skew_seconds,
            limiter=limiter,
            limit_setting=limit_setting,
        )

    def admit(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        method: str,
        target: str,
        role: Role,
        nonce_store: NonceStore,
    ) -> Roles:
        """The caller's roles once all three checks pass; ``target`` is the raw path and query."""
        hotkey = self.authenticate(headers, body, method=method, target=target, nonce_store=nonce_store)
        return self.check(hotkey, role)

    def authenticate(
        self, headers: Mapping[str, str], body: bytes, *, method: str, target: str, nonce_store: NonceStore
    ) -> str:
        """The verified sender hotkey (its nonce now recorded in ``nonce_store``), or a 401 refusal."""
        try:
            caller = verify_request(
                headers,
                body,
                method=method,
                path=target,
                self_hotkey=self.receiver,
                nonce_store=nonce_store,
                max_age=self.max_age,
                allowed_skew=self.allowed_skew,
            )
        except AuthError as exc:
            raise Refusal(401, auth_error_code(exc), str(exc)) from None
        return caller.hotkey_ss58

    def check(self, hotkey: str, role: Role) -> Roles:
        """Count a verified caller's request against its budget, then require ``role`` of it."""
        if self.limiter is not None and (wait := self.limiter.hit(hotkey)) is not None:
            detail = rate_limit_detail(wait, "hotkey", self.limit_setting, self.limiter.limit)
            raise Refusal(429, "rate_limited", detail, retry_after=wait)
        if role == "owner" and self.owner_hotkey and hotkey == self.owner_hotkey:
            # The configured owner needs no chain lookup (owner actions work while the chain is down).
            return Roles(hotkey=hotkey, registered=True, validator=False, owner=True, uid=None)
        roles = Roles.of(
            hotkey, self.chain.metagraph(), owner_hotkey=self.owner_hotkey, min_stake=self.min_validator_stake
        )
        self.require(roles, role)
        return roles

    def require(self, roles: Roles, role: Role) -> None:
        """A 403 refusal unless ``roles`` include ``role``."""
        if role == "owner":
            if not roles.owner:
                raise Refusal(403, "not_owner", f"{roles.hotkey} is not the subnet owner's hotkey (OWNER_HOTKEY)")
            return
        if not roles.registered:
            raise Refusal(
                403,
                "not_registered",
                f"hotkey {roles.hotkey} is not registered on subnet {self.netuid}; register it first "
                "(btcli subnet register, or `quasar chain register` on the local dev chain)",
            )
        if role == "validator" and not roles.validator:
            minimum = self.min_validator_stake or 0
            raise Refusal(
                403,
                "not_validator",
                f"hotkey {roles.hotkey} has no validator permit"
                + (f" and less than MIN_VALIDATOR_STAKE={minimum:g} stake" if minimum > 0 else "")
                + "; only validators may call this endpoint",
            )
