"""quasar.urlpolicy: what a miner may reveal as repo_url / inference_url, in production and dev mode."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from quasar.config import Settings
from quasar.urlpolicy import MAX_URL_LENGTH, UrlNotAllowed, check_url, is_public_ip, resolve_and_pin

HOSTS = Settings().allowed_repo_hosts  # the shipped default: github.com, gitlab.com, huggingface.co


def prod_repo(url: str) -> str:
    return check_url(url, dev_mode=False, allowed_hosts=HOSTS, kind="repo")


def prod_inf(url: str) -> str:
    return check_url(url, dev_mode=False, allowed_hosts=HOSTS, kind="inference")


def dev_repo(url: str) -> str:
    return check_url(url, dev_mode=True, allowed_hosts=HOSTS, kind="repo")


def dev_inf(url: str) -> str:
    return check_url(url, dev_mode=True, allowed_hosts=HOSTS, kind="inference")


def refused(fn, url: str) -> str:
    with pytest.raises(UrlNotAllowed) as info:
        fn(url)
    assert info.value.detail and info.value.code in str(info.value)
    return info.value.code


# --- production: repositories -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        (
            "https://github.com/alice/flash-linear-attention",
            "https://github.com/alice/flash-linear-attention",
        ),
        ("https://github.com/alice/fla.git", "https://github.com/alice/fla.git"),
        ("HTTPS://GitHub.COM./alice/FLA", "https://github.com/alice/FLA"),
        ("https://github.com:443/alice/fla", "https://github.com/alice/fla"),
        ("https://gist.github.com/alice/x", "https://gist.github.com/alice/x"),
        ("https://huggingface.co/alice/fla", "https://huggingface.co/alice/fla"),
    ],
)
def test_prod_repo_allowed(url, normalised):
    assert prod_repo(url) == normalised


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://github.com/alice/fla", "scheme_not_allowed"),
        ("ssh://git@github.com/alice/fla", "scheme_not_allowed"),
        ("git://github.com/alice/fla", "scheme_not_allowed"),
        ("git+ssh://github.com/alice/fla", "scheme_not_allowed"),
        ("ftp://github.com/alice/fla", "scheme_not_allowed"),
        ("git@github.com:alice/fla.git", "scheme_not_allowed"),
        ("github.com:alice/fla", "scheme_not_allowed"),
        ("ext::sh -c touch% /tmp/pwned", "invalid_url"),  # whitespace, and transport syntax
        ("ext::sh%20-c%20id", "scheme_not_allowed"),
        ("file:///home/alice/fla", "scheme_not_allowed"),
        ("/home/alice/fla", "scheme_not_allowed"),
        ("https://evil.com/alice/fla", "host_not_allowed"),
        ("https://evilgithub.com/alice/fla", "host_not_allowed"),
        ("https://github.com.evil.com/alice/fla", "host_not_allowed"),
        ("https://140.82.112.3/alice/fla", "host_not_allowed"),
        ("https://user:token@github.com/alice/fla", "userinfo_not_allowed"),
        ("https://github.com@evil.com/alice/fla", "userinfo_not_allowed"),
        ("https://github.com:8443/alice/fla", "port_not_allowed"),
        ("https://github.com/alice/fla?ref=x", "invalid_url"),
        ("https://github.com/alice/fla#main", "invalid_url"),
        ("https://127.0.0.1/alice/fla", "private_address"),
        ("https://localhost/alice/fla", "private_address"),
        ("https://[::1]/alice/fla", "private_address"),
        ("-uhttps://github.com/alice/fla", "invalid_url"),
        ("--upload-pack=touch /tmp/x", "invalid_url"),
        ("https://github.com/alice/fla\n", "invalid_url"),
        ("https://github.com/al ice/fla", "invalid_url"),
        ("https://github.com\\@evil.com/x", "invalid_url"),
        ("https://github.com:99999/x", "invalid_url"),
        ("https:///alice/fla", "invalid_url"),
        ("", "invalid_url"),
        ("https://" + "a" * 3000 + ".com/", "invalid_url"),
    ],
)
def test_prod_repo_refused(url, code):
    assert refused(prod_repo, url) == code


def test_empty_allow_list_refuses_every_host():
    with pytest.raises(UrlNotAllowed, match="none configured"):
        check_url("https://github.com/a/b", dev_mode=False, allowed_hosts=[], kind="repo")


def test_allow_list_entries_are_matched_case_insensitively():
    assert check_url("https://git.example.org/a", dev_mode=False, allowed_hosts=["Example.ORG."], kind="repo")


# --- production: inference servers --------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("http://8.8.8.8:8001", "http://8.8.8.8:8001"),
        ("https://miner.example.com", "https://miner.example.com"),
        ("http://miner.example.com:80/v1", "http://miner.example.com/v1"),
        ("http://[2606:4700:4700::1111]:8001", "http://[2606:4700:4700::1111]:8001"),
        ("http://Bücher.example:8001", "http://xn--bcher-kva.example:8001"),
    ],
)
def test_prod_inference_allowed(url, normalised):
    assert prod_inf(url) == normalised


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001",
        "http://127.1:8001",  # inet_aton short forms still mean loopback to curl
        "http://2130706433:8001",
        "http://0x7f000001/",
        "http://0.0.0.0:8001",
        "http://10.1.2.3:8001",
        "http://172.16.0.1",
        "http://192.168.1.10",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://100.64.0.1",  # carrier-grade NAT
        "http://224.0.0.1",
        "http://240.0.0.1",
        "http://255.255.255.255",
        "http://[::1]:8001",
        "http://[::]:8001",
        "http://[fe80::1]",
        "http://[fc00::1]",
        "http://[ff02::1]",
        "http://[::ffff:127.0.0.1]:8001",  # IPv4-mapped
        "http://[::ffff:a00:1]",
        "http://[::127.0.0.1]",  # IPv4-compatible
        "http://[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "http://localhost:8001",
        "http://LOCALHOST.:8001",
        "http://foo.localhost",
        "http://printer.local",
        "http://metadata.google.internal",
        "http://intranet",
    ],
)
def test_prod_inference_private_refused(url):
    assert refused(prod_inf, url) == "private_address"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://8.8.8.8/", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("/srv/model", "scheme_not_allowed"),
        ("http://u:p@8.8.8.8:8001", "userinfo_not_allowed"),
        ("http://8.8.8.8:0", "port_not_allowed"),
        ("http://8.8.8.8:8001/?a=1", "invalid_url"),
        ("http://[fe80::1%25eth0]:8001", "invalid_url"),
        ("http://[nonsense]:8001", "invalid_url"),
        ("http://8.8.8:8001", "invalid_url"),  # public, but not dotted-quad: say how to write it
        ("http://exa%6dple.com", "invalid_url"),
        ("http://a..b.com", "invalid_url"),
        ("http://a_b$.com", "invalid_url"),
    ],
)
def test_prod_inference_refused(url, code):
    assert refused(prod_inf, url) == code


# --- development mode ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("/tmp/repos/fla", "/tmp/repos/fla"),
        ("file:///tmp/repos/fla", "file:///tmp/repos/fla"),
        ("file://localhost/tmp/repos/fla", "file:///tmp/repos/fla"),
        ("http://127.0.0.1:9418/fla.git", "http://127.0.0.1:9418/fla.git"),
        ("http://localhost:8080/fla.git", "http://localhost:8080/fla.git"),
        ("https://10.0.0.5/fla.git", "https://10.0.0.5/fla.git"),
        ("https://github.com/alice/fla", "https://github.com/alice/fla"),
        ("http://gitserver/fla?x=1", "http://gitserver/fla?x=1"),
    ],
)
def test_dev_repo_allowed(url, normalised):
    assert dev_repo(url) == normalised


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ssh://git@localhost/fla", "scheme_not_allowed"),
        ("git://localhost/fla", "scheme_not_allowed"),
        ("git@localhost:fla.git", "scheme_not_allowed"),
        ("ext::sh%20-c%20id", "scheme_not_allowed"),
        ("fd::17", "scheme_not_allowed"),
        ("-c core.sshCommand=x", "invalid_url"),
        ("--upload-pack=x", "invalid_url"),
        ("relative/fla", "invalid_url"),
        ("./fla", "invalid_url"),
        ("file://otherhost/tmp/fla", "invalid_url"),
        ("http://user:pw@localhost/fla", "userinfo_not_allowed"),
        ("http://localhost/fla#x", "invalid_url"),
    ],
)
def test_dev_repo_refused(url, code):
    assert refused(dev_repo, url) == code


@pytest.mark.parametrize("url", ["http://127.0.0.1:8001", "http://localhost:8001", "http://[::1]:8001"])
def test_dev_inference_allows_loopback(url):
    assert dev_inf(url) == url


@pytest.mark.parametrize("url", ["/srv/model", "file:///srv/model", "ws://127.0.0.1:8001"])
def test_dev_inference_needs_http(url):
    assert refused(dev_inf, url) == "scheme_not_allowed"


# --- resolution and pinning ------------------------------------------------------------------------
def fake_dns(*answers: str):
    """A resolver with getaddrinfo's shape that answers from a fixed table (no network in tests)."""
    calls: list[tuple[str, int]] = []

    def resolve(host, port, *args, **kwargs):
        calls.append((host, port))
        out = []
        for a in answers:
            family = socket.AF_INET6 if ":" in a else socket.AF_INET
            sockaddr = (a, port, 0, 0) if family == socket.AF_INET6 else (a, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def test_pin_public_answer():
    dns = fake_dns("140.82.112.3")
    url, ip = resolve_and_pin("https://github.com/a/b", dev_mode=False, resolver=dns)
    assert (url, ip) == ("https://github.com/a/b", "140.82.112.3")
    assert dns.calls == [("github.com", 443)]


def test_pin_refuses_any_private_answer():
    dns = fake_dns("140.82.112.3", "10.0.0.7")
    with pytest.raises(UrlNotAllowed) as info:
        resolve_and_pin("http://miner.example.com:8001", dev_mode=False, resolver=dns)
    assert info.value.code == "private_address" and "10.0.0.7" in info.value.detail
    assert dns.calls == [("miner.example.com", 8001)]


def test_pin_rebinding_name_refused():
    dns = fake_dns("127.0.0.1")
    assert refused(lambda u: resolve_and_pin(u, dev_mode=False, resolver=dns), "https://127.0.0.1.nip.io/")


def test_pin_dev_mode_allows_private_answers():
    dns = fake_dns("fe80::1%eth0")
    assert resolve_and_pin("http://box.lan:8001", dev_mode=True, resolver=dns)[1] == "fe80::1"


def test_pin_literal_is_not_resolved():
    def no_dns(*a, **k):
        raise AssertionError("an IP literal must not be looked up")

    assert resolve_and_pin("http://8.8.8.8:8001", dev_mode=False, resolver=no_dns)[1] == "8.8.8.8"
    assert refused(lambda u: resolve_and_pin(u, dev_mode=False, resolver=no_dns), "http://[::1]:1") == (
        "private_address"
    )


def test_pin_unresolvable():
    def nxdomain(*a, **k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    code = refused(lambda u: resolve_and_pin(u, dev_mode=False, resolver=nxdomain), "https://nope.invalid/")
    assert code == "host_unresolvable"


def test_pin_local_paths_only_in_dev():
    assert resolve_and_pin("/tmp/fla", dev_mode=True) == ("/tmp/fla", None)
    assert resolve_and_pin("file:///tmp/fla", dev_mode=True) == ("file:///tmp/fla", None)
    assert refused(lambda u: resolve_and_pin(u, dev_mode=False), "/tmp/fla") == "scheme_not_allowed"


def test_pin_real_loopback_resolution_in_dev():
    # The real resolver, offline: "localhost" is answered from /etc/hosts.
    url, ip = resolve_and_pin("http://localhost:8001", dev_mode=True)
    assert ipaddress.ip_address(ip).is_loopback


@pytest.mark.parametrize(
    ("address", "public"),
    [("1.1.1.1", True), ("192.0.2.1", False), ("::ffff:1.1.1.1", True), ("2001:db8::1", False)],
)
def test_is_public_ip(address, public):
    assert is_public_ip(ipaddress.ip_address(address)) is public


# --- lengths once normalised (the API stores URLs in 512-character columns) ----------------------
def test_host_over_253_characters_once_idna_encoded_is_refused():
    idn = "https://" + "ñ." * 236 + "github.com/miner/fla"  # 501 characters, a 1,898-character host
    assert len(idn) <= MAX_URL_LENGTH
    with pytest.raises(UrlNotAllowed, match="at most 253") as caught:
        prod_repo(idn)
    assert len(caught.value.detail) < 200
    with pytest.raises(UrlNotAllowed, match="at most 253"):
        prod_repo("https://" + "a." * 130 + "github.com/miner/fla")
    # 253 exactly is a host name.
    host = "aa." + "a." * 120 + "github.com"
    assert len(host) == 253 and prod_repo(f"https://{host}/m/f") == f"https://{host}/m/f"


def test_label_over_63_characters_is_refused_without_echoing_it_whole():
    with pytest.raises(UrlNotAllowed, match="63") as caught:
        prod_repo("https://" + "a" * 300 + ".github.com/miner/fla")
    assert caught.value.code == "invalid_url" and len(caught.value.detail) < 200
    assert prod_repo("https://" + "a" * 63 + ".github.com/m/f")


def test_url_longer_than_the_column_once_normalised_is_refused():
    url = "https://" + "ñ." * 30 + "github.com/miner/" + "r" * 400  # 485 sent, 665 normalised
    assert len(url) <= MAX_URL_LENGTH
    with pytest.raises(UrlNotAllowed, match=f"once normalised.*at most {MAX_URL_LENGTH}"):
        prod_repo(url)
    assert refused(prod_repo, "https://github.com/" + "r" * MAX_URL_LENGTH) == "invalid_url"
