"""`countersign serve --workers N` (N > 1): N processes behind one port under gunicorn's arbiter.

One interpreter tops out at what one core does: a decision's Python work, the agent loop, the
executor and the outbox share its GIL. So a serve on PostgreSQL forks N workers from one
master with gunicorn (its arbiter forks, watches and replaces them; its `gthread` worker serves
HTTP from a thread pool). Each worker builds its own engine, services and background loops after
the fork (`Share`, built by `start`), so no connection, pool or thread crosses a fork, and they
coordinate through the database exactly as replicas on several machines do.

Stopping, in each worker (`ServeWorker`):
- SIGTERM (the master forwards its own): stop accepting, finish the requests in flight (kept-alive
  connections linger at most 2 s), while the background loops, told at once, finish the unit
  they hold (a tool call, a delivery, a model step) and release its lease; all within
  `GRACEFUL_TIMEOUT_S`, after which the master kills what is left.
- SIGINT/SIGQUIT: gunicorn's quick stop; the background loops are still told and waited for.
- The master gone (SIGKILL, a crash): the kernel sends each worker SIGTERM at once
  (`PR_SET_PDEATHSIG`), so none keeps serving the port or claiming work; gunicorn's own check
  (the parent pid changed) backs it up within a second. What a worker held when it was killed
  outright is a lease that expires, as after any crash.

The master never imports the application: everything it needs arrives as `start`, a function
the worker calls with its slot (0…N-1; a replaced worker takes the slot it frees).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from gunicorn.app.base import BaseApplication
from gunicorn.errors import HaltServer
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn, ThreadWorker

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

# The same limits as the one-process server (waitress, `bot.server.listen`; docs/operations.md
# "Connection limits and timeouts"), per worker: a request thread is taken only by a
# connection with bytes to read, an idle one (new, or kept alive) waits in the worker's poller
# and is closed after IDLE_TIMEOUT_S, and a client that stalls mid-request or mid-response
# frees its thread after IDLE_TIMEOUT_S too. THREADS as `bot.server.THREADS`: up to 28 of them
# may wait for a decision slot (`bot.admission.MAX_WAITING`).
THREADS = 32
CONNECTIONS = 1000
IDLE_TIMEOUT_S = 15
BACKLOG = 2048
GRACEFUL_TIMEOUT_S = 30
# The master restarts a worker whose main loop (not a request: those run in threads) has not
# checked in for this long; the loop checks in at least once a second.
HEARTBEAT_TIMEOUT_S = 30
_MARGIN_S = 2.0  # of GRACEFUL_TIMEOUT_S, left for the worker to exit before the master kills it
_PR_SET_PDEATHSIG = 1
_PARKED = object()  # a request handed to the long-poll waiters (`ServeWorker.handle_request`)

Handler = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


class Share(Protocol):
    """What one worker serves and runs: its WSGI application and its background loops."""

    @property
    def wsgi(self) -> Handler: ...

    def stop(self) -> None:
        """Tell the background loops to claim nothing more (returns at once)."""

    def close(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the work they hold, then let go of the database."""


Start = Callable[[int], Share]  # a worker's slot → its share, built in the worker after the fork


@dataclass(frozen=True)
class Listening:
    host: str
    port: int
    workers: int


class Prefork(BaseApplication):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn run from code: our settings, our worker class and hooks, no config file, no
    command line of its own and no control socket."""

    def __init__(self, start: Start, listening: Listening, *, ready: Callable[[], None] | None = None) -> None:
        self.start, self.listening, self.ready = start, listening, ready
        super().__init__()

    def load_config(self) -> None:
        host = f"[{self.listening.host}]" if ":" in self.listening.host else self.listening.host
        settings: dict[str, Any] = {
            "bind": [f"{host}:{self.listening.port}"],
            "workers": self.listening.workers,
            "worker_class": ServeWorker,
            "threads": THREADS,
            "worker_connections": CONNECTIONS,
            "keepalive": IDLE_TIMEOUT_S,
            "backlog": BACKLOG,
            "timeout": HEARTBEAT_TIMEOUT_S,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "forwarded_allow_ips": "",  # trust no peer's X-Forwarded-* headers, as waitress does not
            "proc_name": "countersign",
            "logger_class": _Logs,
            "control_socket_disable": True,
            "pre_fork": _assign_slot,
            "when_ready": self._when_ready,
            "child_exit": _forget_worker,
            "worker_exit": _exit_worker,
        }
        for name, value in settings.items():
            self.cfg.set(name, value)

    def load(self) -> Handler:
        raise NotImplementedError("each ServeWorker builds its own share (`start`)")

    def _when_ready(self, _arbiter: object) -> None:
        if self.ready is not None:
            self.ready()


class _Logs(Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's own lines (workers booting, exiting, restarted) through the process's logging,
    as every other library's: JSON lines in production, secrets redacted (`core.logs`)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True


def _assign_slot(arbiter: Any, worker: Any) -> None:
    """In the master, before the fork: the lowest slot no live worker holds."""
    taken = {getattr(other, "slot", None) for other in arbiter.WORKERS.values()}
    worker.slot = next(slot for slot in range(len(taken) + 1) if slot not in taken)


def _forget_worker(_arbiter: object, worker: Any) -> None:
    """In the master, after a worker exited: its live-gauge files go (counters stay summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _exit_worker(_arbiter: object, worker: Any) -> None:
    """In the worker, last: leave with the exit status gunicorn chose, now.

    gunicorn ends a worker with `sys.exit`, which in a forked child unwinds through the master's
    frames (our CLI command, its cleanup of the metrics directory) and then waits for every
    non-daemon thread (a Slack call after an ack, a scheduler job): the share is closed already
    (`ServeWorker.run`), so nothing is left to wait for. gunicorn also calls this hook in the
    master for a worker that was already gone: there it does nothing."""
    if os.getpid() != worker.pid:
        return
    raised = sys.exc_info()[1]
    code = raised.code if isinstance(raised, SystemExit) else (0 if raised is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


class ServeWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's threaded worker, plus this worker's share of the background loops, and
    without a thread spent on a connection that has sent nothing."""

    slot: int  # set by `_assign_slot` before the fork
    share: Share | None = None
    stopping_since: float | None = None

    def init_process(self) -> None:
        die_with_parent(self.ppid)
        super().init_process()

    def load_wsgi(self) -> None:
        # After init_signals: a SIGTERM from here on is a graceful stop, even mid-boot.
        self.share = self.app.start(self.slot)
        self.wsgi = self.share.wsgi

    def handle_exit(self, sig: int, frame: object) -> None:
        """SIGTERM: gunicorn stops accepting and drains; the background loops stop claiming now,
        from the main loop (not inside the signal handler), so both wind down together."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        super().handle_exit(sig, frame)
        self.method_queue.defer(self._stop_share)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._close_share()

    def _stop_share(self) -> None:
        if self.share is not None:
            self.share.stop()

    def _close_share(self) -> None:
        if self.share is None:
            return
        since = self.stopping_since if self.stopping_since is not None else time.monotonic()
        self.share.stop()
        self.share.close(max(0.0, since + GRACEFUL_TIMEOUT_S - _MARGIN_S - time.monotonic()))
        self.share = None

    # -- long-polls parked without a thread (`bot.waiters`) ----------------------------------

    def handle_request(self, req: Any, conn: Any) -> Any:
        """A long-poll (`GET /api/actions/{id}?wait=S`) is parked in the app's `Waiters` and this
        thread returns at once (`_PARKED`: the connection is left alone, neither kept alive in
        the poller nor closed); released, it is served by a pool thread as a plain read."""
        from bot.waiters import long_poll_of  # in the worker, after the fork: the master imports no app

        waiters = getattr(self.wsgi, "waiters", None)
        if waiters is not None and self.alive:
            authorization = next((value for name, value in req.headers if name == "AUTHORIZATION"), "")
            found = long_poll_of(req.method, req.path, req.query, authorization)
            if found is not None:
                public_id, token, wait_s = found
                waiters.park(public_id, token, wait_s, partial(self._release_parked, req, conn))
                return _PARKED
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: Any, keepalive: Any) -> Any:
        return _PARKED if keepalive is _PARKED else super()._keepalive_after(conn, keepalive)

    def finish_request(self, conn: Any, fs: Any) -> None:
        if not fs.cancelled() and fs.exception() is None and fs.result() is _PARKED:
            return  # its answer comes when it is released
        super().finish_request(conn, fs)

    def _release_parked(self, req: Any, conn: Any) -> None:
        from bot.waiters import without_wait

        req.query = without_wait(req.query)

        def serve() -> Any:
            return self._keepalive_after(conn, super(ServeWorker, self).handle_request(req, conn))

        future = self.tpool.submit(serve)
        future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))

    def set_accept_enabled(self, enabled: bool) -> None:
        """Stopping, let go of the port at once rather than after the drain (gunicorn closes it
        last), so a new `serve` can bind it while this worker finishes its requests."""
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                # Connections the kernel completed before the stop are the clients' requests in
                # flight: take them from the backlog and answer them (closing the listener
                # with them queued would reset them).
                while self.nr_conns < self.worker_connections and self.accept(listener):
                    pass
                listener.close()

    def accept(self, listener: socket.socket) -> bool:
        """A new connection waits in the poller, holding no thread, until it has bytes to read
        (gunicorn hands it to a thread at once, which then waits up to 5 s for them: 16 silent
        connections would hold every thread); one that sends nothing is closed after
        IDLE_TIMEOUT_S, like a kept-alive one. False when no connection was waiting."""
        try:
            accepted, address = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            if exc.errno == errno.ECONNABORTED:
                return True  # that one is gone; the next may be waiting
            raise
        client = _TimedSocket(accepted.family, accepted.type, accepted.proto, fileno=accepted.detach())
        self.nr_conns += 1
        connection = TConn(self.cfg, client, address, listener.getsockname())
        connection.timeout = time.monotonic() + IDLE_TIMEOUT_S
        self.pending_conns.append(connection)
        self.poller.register(client, selectors.EVENT_READ, partial(self.on_pending_socket_readable, connection))
        return True


class _TimedSocket(socket.socket):
    """A client connection whose blocking reads and writes give up after IDLE_TIMEOUT_S.

    gunicorn reads a request and writes its answer in a thread with the socket blocking and no
    timeout, so a client that stops half-way through either would hold that thread for ever.
    Here such a stall ends the connection after IDLE_TIMEOUT_S, reported to gunicorn as the
    client resetting it (which it drops quietly)."""

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(IDLE_TIMEOUT_S)
        else:
            super().setblocking(False)

    def recv(self, *args: Any) -> bytes:
        try:
            return super().recv(*args)
        except TimeoutError:
            raise ConnectionResetError(errno.ECONNRESET, "the client stalled mid-request") from None

    def sendall(self, *args: Any) -> None:
        try:
            super().sendall(*args)
        except TimeoutError:
            raise ConnectionResetError(errno.ECONNRESET, "the client stopped reading the answer") from None


def die_with_parent(parent: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), and
    check the parent did not die before we asked. Elsewhere gunicorn's own check remains."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


class WorkersFailed(Exception):
    """The master gave up: a worker could not start (its error is logged above)."""


def serve_workers(start: Start, listening: Listening, *, ready: Callable[[], None] | None = None) -> None:
    """Run the master until it is told to stop (SIGTERM drains, SIGINT stops quickly)."""
    try:
        Prefork(start, listening, ready=ready).run()
    except HaltServer as halted:  # raised again while it halts (gunicorn reaps the workers in `halt`)
        raise WorkersFailed(f"{halted.reason} (exit status {halted.exit_status})") from None
