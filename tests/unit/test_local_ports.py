"""`quasar local up`'s port check: a live listener makes a port busy, TIME_WAIT after a stop does not."""

from __future__ import annotations

import socket

import pytest

from quasar.local.processes import port_is_free


def _listener(host: str) -> socket.socket:
    """A listening socket bound the way uvicorn binds (SO_REUSEADDR)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_port_with_a_live_listener_is_busy(host: str) -> None:
    with _listener(host) as server:
        assert not port_is_free(server.getsockname()[1])


def test_a_port_whose_server_just_stopped_is_free_though_in_time_wait() -> None:
    server = _listener("127.0.0.1")
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server closes first: its side of the connection stays in TIME_WAIT
    assert client.recv(1) == b""
    client.close()
    server.close()
    # The state the check must see past: a bind without SO_REUSEADDR fails there.
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    assert port_is_free(port)
    with socket.socket() as again:  # and a server binding as uvicorn does can listen there now
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
