"""Request signing and verification with the bittensor SDK's `btauth/1` (DESIGN §4).

Clients sign with :class:`BtAuth` (an ``httpx.Auth``) or :func:`sign_headers`; servers — the
Validator API and the miner inference server — authenticate with :func:`verify_request`. The scheme
itself is `bittensor.http_auth`; this module only adds the two policies the subnet needs on top of
it, checked in this order before the SDK's own checks:

1. :class:`Unsigned` — the request carries no btauth header at all (so a server can say "sign
   it" instead of "your signature is malformed");
2. :class:`UnsupportedCrypto` — ``X-Bittensor-Crypto`` names anything but sr25519. Rejected before
   any verification: hotkeys on the subnet are sr25519, and an ed25519 key is a different identity
   that merely looks like an ss58 address.

Then `bittensor.http_auth.verify` runs and its errors propagate unchanged: ``MalformedAuth``,
``WrongReceiver``, ``StaleRequest``, ``BadSignature``, ``ReplayedRequest``. Every failure is an
``AuthError``; :data:`AUTH_ERROR_CODES` gives servers a stable error ``code`` for each.

The signed target is the raw path plus ``?query`` exactly as sent; servers take it from the ASGI
scope with :func:`asgi_request_target`, never from a re-encoded URL.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import httpx
from bittensor import http_auth
from bittensor.http_auth import AuthError, Caller, NonceStore
from bittensor.signing import WalletLike, resolve_signer
from bittensor.sp_core import CRYPTO_SR25519
from bittensor.wallets import parse_crypto_type

__all__ = [
    "AUTH_ERROR_CODES",
    "AuthError",
    "BtAuth",
    "Caller",
    "NonceStore",
    "Unsigned",
    "UnsupportedCrypto",
    "asgi_request_target",
    "auth_error_code",
    "sign_headers",
    "verify_request",
]

_BTAUTH_HEADERS = tuple(
    name.lower()
    for name in (
        http_auth.HEADER_VERSION,
        http_auth.HEADER_HOTKEY,
        http_auth.HEADER_RECEIVER,
        http_auth.HEADER_NONCE,
        http_auth.HEADER_CRYPTO,
        http_auth.HEADER_SIGNATURE,
    )
)


class Unsigned(AuthError):
    """The request has no btauth headers; sign it with the caller's hotkey (`quasar.signing.BtAuth`)."""


class UnsupportedCrypto(AuthError):
    """The request was signed with a scheme other than sr25519; use an sr25519 hotkey."""


AUTH_ERROR_CODES: Mapping[type[AuthError], str] = {
    Unsigned: "unsigned",
    UnsupportedCrypto: "unsupported_crypto",
    http_auth.MalformedAuth: "malformed_auth",
    http_auth.WrongReceiver: "wrong_receiver",
    http_auth.StaleRequest: "stale_request",
    http_auth.BadSignature: "bad_signature",
    http_auth.ReplayedRequest: "replayed_nonce",
}


def auth_error_code(error: AuthError) -> str:
    """The stable `code` of an auth failure (most specific class wins; ``unauthenticated`` if unknown)."""
    for cls in type(error).__mro__:
        if cls in AUTH_ERROR_CODES:
            return AUTH_ERROR_CODES[cls]
    return "unauthenticated"


def sign_headers(
    wallet: WalletLike,
    *,
    method: str,
    target: str,
    body: bytes = b"",
    receiver: str,
    nonce_ns: int | None = None,
) -> dict[str, str]:
    """The btauth headers for one request, signed by the wallet's (or keypair's) hotkey.

    ``target`` is the path plus ``?query`` exactly as it goes on the wire, ``body`` the exact bytes
    sent, ``receiver`` the ss58 hotkey of the server (the API's is in ``GET /v1/info``). Each send,
    retries included, must sign afresh: the nonce is single use.
    """
    signer = resolve_signer(wallet, role="hotkey")
    if signer.crypto_type != CRYPTO_SR25519:
        # Fail here with a clear message rather than at the server with `unsupported_crypto`.
        raise ValueError(
            "the subnet accepts only sr25519 hotkeys; this key is not sr25519 — "
            "create an sr25519 hotkey (btcli wallet new-hotkey, or `quasar wallet create`)"
        )
    return http_auth.sign(
        signer, method=method, path=target, body=body, receiver_ss58=receiver, nonce_ns=nonce_ns
    )


class BtAuth(httpx.Auth):
    """httpx authentication that signs every request (and every retry, with a fresh nonce).

    Signs the raw path+query and the exact body bytes httpx will send, for ``receiver`` (the
    server's hotkey). Use as ``httpx.Client(auth=BtAuth(wallet, receiver=api_hotkey))`` or per
    request.
    """

    requires_request_body = True

    def __init__(self, wallet: WalletLike, *, receiver: str) -> None:
        self._signer = resolve_signer(wallet, role="hotkey")
        self.receiver = receiver

    @property
    def hotkey(self) -> str:
        return self._signer.ss58_address

    def sign(self, request: httpx.Request) -> None:
        """Sign ``request`` in place (replacing any earlier signature)."""
        headers = sign_headers(
            self._signer,
            method=request.method,
            target=request.url.raw_path.decode("ascii"),
            body=request.content,
            receiver=self.receiver,
        )
        request.headers.update(headers)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request


def asgi_request_target(scope: Mapping[str, Any]) -> str:
    """The request target as the client signed it: the raw path plus ``?query`` from an ASGI scope.

    ``scope["path"]`` is percent-decoded, so a path with escapes would no longer match the signature;
    ``raw_path`` (when the server provides it) holds the bytes as received.
    """
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope.get("path", "/")
    # Some servers put the query in raw_path as well; only append it when it is not there.
    query = scope.get("query_string") or b""
    if query and "?" not in path:
        path = f"{path}?{query.decode('latin-1')}"
    return path


def _lowered(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """Header names lower-cased; a btauth header sent twice is malformed (which copy counts is ambiguous)."""
    pairs = headers.multi_items() if hasattr(headers, "multi_items") else headers.items()
    lowered: dict[str, str] = {}
    for key, value in pairs:
        name = key.lower()
        if name in lowered and name in _BTAUTH_HEADERS:
            raise http_auth.MalformedAuth(
                f"header {key} appears more than once; send each btauth header once"
            )
        lowered[name] = value
    return lowered


def verify_request(
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    self_hotkey: str,
    nonce_store: NonceStore,
    max_age: float | None = None,
    allowed_skew: float | None = None,
    now_ns: int | None = None,
) -> Caller:
    """Authenticate a received request; returns the caller or raises an ``AuthError`` subclass.

    ``body`` is the raw received bytes (before any JSON parsing), ``path`` the raw target with its
    query (see :func:`asgi_request_target`), ``self_hotkey`` this server's ss58 hotkey (requests
    must be bound to it), ``nonce_store`` shared by every replica of the server. ``max_age`` and
    ``allowed_skew`` default to AUTH_MAX_AGE_SECONDS and AUTH_ALLOWED_SKEW_SECONDS.
    """
    lowered = _lowered(headers)
    if not any(name in lowered for name in _BTAUTH_HEADERS):
        raise Unsigned(
            "this endpoint needs a btauth/1 signed request (X-Bittensor-* headers); "
            "sign it with your hotkey, e.g. quasar.client.ValidatorApiClient(url, wallet)"
        )
    crypto = lowered.get(http_auth.HEADER_CRYPTO.lower())
    if crypto is not None:
        try:
            supported = parse_crypto_type(crypto) == CRYPTO_SR25519
        except ValueError:
            supported = False
        if not supported:
            raise UnsupportedCrypto("only sr25519 signatures are accepted; sign with an sr25519 hotkey")

    if max_age is None or allowed_skew is None:
        from quasar.config import get_settings  # read lazily: verification must not need a .env

        settings = get_settings()
        max_age = settings.auth_max_age_seconds if max_age is None else max_age
        allowed_skew = settings.auth_allowed_skew_seconds if allowed_skew is None else allowed_skew

    return http_auth.verify(
        lowered,
        body,
        method=method,
        path=path,
        self_hotkey_ss58=self_hotkey,
        max_age=max_age,
        allowed_skew=allowed_skew,
        require_receiver=True,
        nonce_store=nonce_store,
        now_ns=now_ns,
    )
