"""Which repository and inference URLs a miner may reveal, and how a fetcher pins their host.

Everything a miner sends is adversarial (DESIGN §3): a repo URL is handed to `git`, an inference URL
to an HTTP client inside the validator's network. Two steps, at two times:

* :func:`check_url` — on receipt (the API at reveal, the validator before it fetches): syntax and
  scheme only, no DNS, so names need not resolve offline. Returns the normalised URL or raises
  :class:`UrlNotAllowed` with a stable ``code``.
* :func:`resolve_and_pin` — at fetch time: resolve the host once, refuse private answers outside
  development mode, and hand back the address to connect to, so a second lookup (DNS rebinding)
  cannot redirect the fetch. Git: ``git -c http.curloptResolve=HOST:PORT:IP clone URL``;
  httpx: connect to the IP and send ``Host``/SNI of the name.

Production policy (``dev_mode=False``):

========== ==================================================================================
repo       ``https://`` only; host equal to, or a subdomain of, an entry of ALLOWED_REPO_HOSTS;
           default port only (git hosts serve on 443; another port on an allowed name is not
           the host the owner meant to allow); no query or fragment.
inference  ``http://`` or ``https://`` to a public host: a name with a dot (not ``localhost``,
           ``*.local``, ``*.internal`` …) or a global IP literal; any port (miners serve on
           MINER_INFERENCE_PORT); no query or fragment.
========== ==================================================================================

Development mode (QUASAR_DEV_MODE) also allows plain http, any host and port (loopback and private
included, allow-list not applied), and for repos absolute local paths and ``file:///`` URLs.

Never allowed, in either mode: ssh, ``git://`` and any other scheme; scp-like ``user@host:path``;
anything starting with ``-`` (it would reach git as an option); userinfo (credentials would be
published with the submission); control characters, whitespace or backslashes (parsers disagree on
them); IPv6 zone ids; relative paths (the validator runs in another directory); git's
``transport::address`` syntax; a host over 253 characters or a label over 63 once IDNA-encoded; a
URL over MAX_URL_LENGTH (512) characters as sent or once normalised.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = ["UrlKind", "UrlNotAllowed", "check_url", "is_public_ip", "resolve_and_pin"]

UrlKind = Literal["repo", "inference"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Longest URL, as sent and once normalised: the API stores repo and inference URLs in 512-character
#: columns, and IDNA can triple a host's length ("ñ" is "xn--ida").
MAX_URL_LENGTH = 512
#: DNS limits (RFC 1035), checked on the IDNA-encoded host.
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
_DEFAULT_PORTS = {"http": 80, "https": 443}
_GIT_TRANSPORT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
# Names that resolve inside the machine or its site network by convention.
_LOCAL_NAME_SUFFIXES = (".localhost", ".local", ".internal", ".intranet", ".lan", ".home.arpa", ".corp")
# inet_aton() (and so git/curl on many platforms) reads "127.1", "0x7f.1" or "2130706433" as IPv4.
_LOOSE_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class UrlNotAllowed(ValueError):
    """A URL the policy refuses. ``code`` is stable (for API errors), ``detail`` says what to send."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def is_public_ip(ip: IPAddress) -> bool:
    """True for globally routable unicast addresses, looking through IPv4 embedded in IPv6."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_ip(embedded)
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_unspecified
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # Each of these forms makes a host (or a translator on the path) talk to the embedded IPv4.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = ip.packed
    if packed[:12] == bytes(12) and packed[12:] != bytes(4):  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed[12:])
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 well-known prefix
        return ipaddress.IPv4Address(packed[12:])
    return None


def _refuse(code: str, detail: str) -> UrlNotAllowed:
    return UrlNotAllowed(code, detail)


def _shown(text: str) -> str:
    """`text` for an error message: a 500-character host would bury the reason."""
    return text if len(text) <= 64 else text[:60] + "…"


def _check_characters(url: str) -> None:
    if not url:
        raise _refuse("invalid_url", "the URL is empty; send an https:// URL of your repository")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse("invalid_url", f"the URL is longer than {MAX_URL_LENGTH} characters")
    if url.startswith("-"):
        raise _refuse("invalid_url", "a URL may not start with '-' (git would read it as an option)")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise _refuse("invalid_url", "the URL contains whitespace or control characters; percent-encode them")
    if "\\" in url:
        raise _refuse("invalid_url", "the URL contains a backslash; use '/' (parsers disagree on '\\')")


def _parse_host(parts: SplitResult) -> tuple[str, IPAddress | None]:
    """The normalised host (IDNA, lower case, no trailing dot) and its address if it is a literal."""
    netloc_host = parts.netloc.rpartition("@")[2]
    if netloc_host.startswith("["):
        literal = netloc_host[1:].partition("]")[0]
        if "%" in literal:
            raise _refuse("invalid_url", "IPv6 zone ids ('%...') are not allowed in URLs")
        try:
            ip6 = ipaddress.IPv6Address(literal)
        except ValueError:
            raise _refuse("invalid_url", f"'[{literal}]' is not an IPv6 address") from None
        return f"[{ip6.compressed}]", ip6
    host = parts.hostname or ""
    if not host:
        raise _refuse("invalid_url", "the URL has no host; use scheme://host/path")
    if "%" in host:
        raise _refuse("invalid_url", "percent-encoded host names are not allowed; write the host plainly")
    try:
        ascii_host = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        # Python's IDNA codec refuses empty labels and labels over 63 characters once encoded.
        raise _refuse(
            "invalid_url",
            f"'{_shown(host)}' is not a valid host name: each label (between dots) must be 1 to "
            f"{MAX_LABEL_LENGTH} characters once IDNA-encoded",
        ) from None
    if not ascii_host or not re.fullmatch(r"[a-z0-9._-]+", ascii_host):
        raise _refuse("invalid_url", f"'{_shown(host)}' is not a valid host name")
    if len(ascii_host) > MAX_HOST_LENGTH:
        raise _refuse(
            "invalid_url",
            f"the host name is {len(ascii_host)} characters once IDNA-encoded; at most {MAX_HOST_LENGTH}",
        )
    if any(len(label) > MAX_LABEL_LENGTH for label in ascii_host.split(".")):
        raise _refuse("invalid_url", f"a label of the host name is over {MAX_LABEL_LENGTH} characters")
    if _LOOSE_IPV4.fullmatch(ascii_host):
        try:
            ip4 = ipaddress.IPv4Address(socket.inet_aton(ascii_host))
        except OSError:
            raise _refuse("invalid_url", f"'{host}' is neither a host name nor an IPv4 address") from None
        return ascii_host, ip4
    return ascii_host, None


def _host_is_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    for entry in allowed_hosts:
        allowed = entry.strip().lower().rstrip(".")
        if allowed and (host == allowed or host.endswith("." + allowed)):
            return True
    return False


def _check_local_path(url: str, *, dev_mode: bool, kind: UrlKind) -> str:
    if kind != "repo":
        raise _refuse("scheme_not_allowed", "an inference URL must be http:// or https://")
    if not dev_mode:
        raise _refuse(
            "scheme_not_allowed",
            "local repository paths are allowed only in development mode (QUASAR_DEV_MODE); "
            "send an https:// URL of a public repository",
        )
    if not url.startswith("/"):
        raise _refuse(
            "invalid_url", "a local repository path must be absolute (the validator runs elsewhere)"
        )
    return url


def check_url(url: str, *, dev_mode: bool, allowed_hosts: Sequence[str], kind: UrlKind) -> str:
    """The normalised ``url`` if the policy allows it for ``kind``; otherwise :class:`UrlNotAllowed`.

    Normalisation lower-cases scheme and host, IDNA-encodes the host, drops a trailing dot and a
    default port; path and query are kept byte for byte. Local paths come back unchanged. No DNS.
    """
    _check_characters(url)
    if "://" not in url:
        colon, slash = url.find(":"), url.find("/")
        if colon >= 0 and (slash < 0 or colon < slash):
            # Git reads a colon before the first slash as "transport::address" or as scp-like ssh
            # ("git@github.com:owner/repo"); neither is a local path.
            what = (
                "git 'transport::address' URLs"
                if _GIT_TRANSPORT.match(url)
                else "scp-like 'user@host:path' addresses"
            )
            raise _refuse("scheme_not_allowed", f"{what} are not allowed; use https://host/owner/repo")
        return _check_local_path(url, dev_mode=dev_mode, kind=kind)

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse("invalid_url", f"unparseable URL ({exc}); use scheme://host[:port]/path") from None
    scheme = parts.scheme.lower()

    if scheme == "file":
        if kind != "repo" or not dev_mode:
            raise _refuse(
                "scheme_not_allowed",
                "file:// URLs are allowed only for repositories in development mode (QUASAR_DEV_MODE)",
            )
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise _refuse("invalid_url", "use file:///absolute/path (no host)")
        if parts.query or parts.fragment:
            raise _refuse("invalid_url", "a file:// URL may not have a query or fragment")
        return urlunsplit(("file", "", parts.path, "", ""))

    allowed_schemes = ("http", "https") if dev_mode or kind == "inference" else ("https",)
    if scheme not in allowed_schemes:
        if scheme in ("http", "https"):
            detail = "plain http is allowed for repositories only in development mode; use https://"
        else:
            detail = f"the {scheme}:// scheme is not allowed; use {' or '.join(s + '://' for s in allowed_schemes)}"
        raise _refuse("scheme_not_allowed", detail)
    if "@" in parts.netloc:
        raise _refuse(
            "userinfo_not_allowed",
            "credentials in a URL would be published with the submission; remove 'user@' and "
            "make the repository public",
        )
    if parts.fragment or "#" in url:
        raise _refuse("invalid_url", "the URL may not have a #fragment")
    if parts.query and not dev_mode:
        raise _refuse("invalid_url", "the URL may not have a ?query")

    host, ip = _parse_host(parts)
    if port is not None and port == 0:
        raise _refuse("port_not_allowed", "port 0 is not a port; leave the port out or name a real one")

    if not dev_mode:
        if ip is not None:
            if not is_public_ip(ip):
                raise _refuse(
                    "private_address",
                    f"{ip} is a loopback, private, link-local, reserved or multicast address; "
                    "use a public address (local addresses are allowed only with QUASAR_DEV_MODE)",
                )
            if isinstance(ip, ipaddress.IPv4Address) and host != str(ip):
                raise _refuse(
                    "invalid_url", f"write the IPv4 address in dotted-quad form ({ip}), not '{host}'"
                )
        elif host == "localhost" or host.endswith(_LOCAL_NAME_SUFFIXES) or "." not in host:
            raise _refuse(
                "private_address",
                f"'{host}' is a local name; use a public host name (allowed only with QUASAR_DEV_MODE)",
            )
        if kind == "repo":
            if ip is not None or not _host_is_allowed(host, allowed_hosts):
                raise _refuse(
                    "host_not_allowed",
                    f"repositories must be on one of: {', '.join(allowed_hosts) or '(none configured)'}",
                )
            if port is not None and port != _DEFAULT_PORTS[scheme]:
                raise _refuse(
                    "port_not_allowed", f"repository URLs use the default {scheme} port; remove ':{port}'"
                )

    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    normalised = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    if len(normalised) > MAX_URL_LENGTH:
        raise _refuse(
            "invalid_url",
            f"the URL is {len(normalised)} characters once normalised (IDNA host); at most {MAX_URL_LENGTH}",
        )
    return normalised


Resolver = Callable[..., list[tuple[Any, ...]]]


def resolve_and_pin(
    url: str, *, dev_mode: bool, resolver: Resolver = socket.getaddrinfo
) -> tuple[str, str | None]:
    """Resolve the URL's host once; returns ``(url, ip)`` to connect to, or :class:`UrlNotAllowed`.

    Call right before fetching a URL that :func:`check_url` accepted, then connect to ``ip`` only
    (never resolve the name again). Outside development mode the fetch is refused if ANY answer is
    not a public address, so a name cannot mix a public and a private record. Local paths and
    ``file://`` (development only) return ``ip=None``. ``resolver`` has ``socket.getaddrinfo``'s
    signature.
    """
    if "://" not in url or url.lower().startswith("file:"):
        if not dev_mode:
            raise _refuse("scheme_not_allowed", "local repositories are allowed only in development mode")
        return url, None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _refuse("scheme_not_allowed", f"cannot fetch {scheme}:// URLs")
    host, literal = _parse_host(parts)
    port = parts.port or _DEFAULT_PORTS[scheme]
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            answers = resolver(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise _refuse(
                "host_unresolvable", f"cannot resolve '{host}' ({exc}); check the host name"
            ) from None
        addresses = []
        for answer in answers:
            sockaddr = answer[4]
            # getaddrinfo may return link-local v6 with a scope ("fe80::1%eth0").
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
        if not addresses:
            raise _refuse("host_unresolvable", f"'{host}' has no address records")
    if not dev_mode:
        private = [str(a) for a in addresses if not is_public_ip(a)]
        if private:
            raise _refuse(
                "private_address",
                f"'{host}' resolves to non-public address(es) {', '.join(private)}; refusing to fetch",
            )
    return url, str(addresses[0])
