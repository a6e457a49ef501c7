"""waitress as `countersign serve` runs it: idle keep-alive connections neither shut out new
ones nor stay open past the channel timeout (real server, real sockets, a free port)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator

import pytest

from bot.server import CHANNEL_TIMEOUT_S, CONNECTION_LIMIT, listen

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n"
BOUND_S = 15.0  # the longest the test waits for what should happen in a second or two


def _hello(environ: object, start_response) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def serving(request: pytest.FixtureRequest) -> Iterator[tuple[int, object]]:
    limit, timeout = request.param
    server = listen(_hello, "127.0.0.1", 0, connection_limit=limit, channel_timeout_s=timeout, cleanup_interval_s=1)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:
            if not closing.is_set():  # closing the sockets under waitress's loop ends it this way
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield server.effective_port, server  # type: ignore[union-attr]
    closing.set()
    server.close()
    thread.join(5)


def _kept_alive(port: int) -> socket.socket:
    """A connection that made one request, read its answer and stays open, idle."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
    connection.sendall(REQUEST)
    assert b"200 OK" in _answer(connection)
    return connection


def _answer(connection: socket.socket) -> bytes:
    received = b""
    while not received.endswith(b"ok"):
        chunk = connection.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_the_defaults_are_set_not_waitresss() -> None:
    server = listen(_hello, "127.0.0.1", 0)
    try:
        adj = server.adj  # type: ignore[union-attr]
        assert (adj.connection_limit, adj.channel_timeout) == (CONNECTION_LIMIT, CHANNEL_TIMEOUT_S)
        assert CONNECTION_LIMIT > 100 and CHANNEL_TIMEOUT_S <= 30  # waitress's own: 100 and 120 s
    finally:
        server.close()


@pytest.mark.parametrize("serving", [(8, 2)], indirect=True)
def test_idle_connections_do_not_shut_out_a_new_one(serving: tuple[int, object]) -> None:
    port, _ = serving
    idle = [_kept_alive(port) for _ in range(6)]  # more than half the limit, all idle
    try:
        fresh = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
        fresh.sendall(REQUEST)
        assert b"200 OK" in _answer(fresh)
        fresh.close()
    finally:
        for connection in idle:
            connection.close()


@pytest.mark.parametrize("serving", [(4, 1)], indirect=True)
def test_idle_connections_are_closed_after_the_channel_timeout_and_free_their_place(
    serving: tuple[int, object],
) -> None:
    port, _ = serving
    idle = [_kept_alive(port) for _ in range(4)]  # the whole limit: waitress stops accepting
    try:
        for connection in idle:
            # recv() returns b"" when the server closes the connection; the socket timeout bounds the wait.
            assert connection.recv(1) == b""
        began = time.monotonic()
        fresh = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
        fresh.sendall(REQUEST)
        assert b"200 OK" in _answer(fresh)
        assert time.monotonic() - began < BOUND_S
        fresh.close()
    finally:
        for connection in idle:
            connection.close()
