"""Sending the fuzz scenario's requests and judging each answer: `fuzz` draws them with
hypothesis (no shrinking, no example database), `Sender` sends them from a few threads on
keep-alive connections, and `Tally` counts every answer against what the request may get.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from bot.slack_ingress import MAX_SLACK_BODY
from chaos.fuzz_shapes import SHAPES
from chaos.fuzz_world import Request


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)  # issue #14's shapes, large bodies included
    slowest: dict[str, float] = field(default_factory=dict)  # shape -> its slowest answer (s)
    server_errors: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    unsigned_accepted: list[str] = field(default_factory=list)
    wrong_answers: list[str] = field(default_factory=list)  # a shape answered other than it must be
    late: list[str] = field(default_factory=list)  # answered after the shape's deadline
    accepted: Counter[str] = field(default_factory=Counter)  # shape -> requests answered 2xx it must refuse
    by_shape: Counter[str] = field(default_factory=Counter)
    huge: int = 0

    def record(self, request: Request, status: int | None, answer: bytes = b"", elapsed: float = 0.0) -> None:
        sample = f"{request.family}/{request.shape} {request.headers} {request.body[:300]!r} -> {status}"
        sample += f" {answer[:200]!r}" + (f" in {elapsed:.2f} s" if status is not None else "")
        large = request.declared is not None or len(request.body) > MAX_SLACK_BODY
        shape = "large" if large else request.family if request.family in SHAPES else None
        with self.lock:
            self.sent += 1
            self.families[f"{request.family}:{request.expect}"] += 1
            self.huge += len(request.body) >= 100_000
            if shape:
                self.shapes[shape] += 1
                self.slowest[shape] = max(self.slowest.get(shape, 0.0), elapsed)
            if status is None:
                self.unanswered.append(sample)
                return
            self.statuses[f"{status // 100}xx" if status != 401 else "401"] += 1
            self.by_shape[f"{request.family}/{request.shape}/{request.expect} {status}"] += 1
            answers = frozenset({413}) if large else request.answers
            if status >= 500:
                self.server_errors.append(sample)
            elif request.family == "auth" and status < 300:
                self.unsigned_accepted.append(sample)
            if shape and status < 300 and answers is not None and status not in answers:
                self.accepted[shape] += 1
            if status < 500 and answers is not None and (status not in answers or request.marker not in answer):
                self.wrong_answers.append(sample)
            if request.deadline_s is not None and elapsed > request.deadline_s:
                self.late.append(sample)


class Sender:
    """Sends requests from a few threads, one keep-alive connection each to the app and the page."""

    def __init__(self, url: str, tally: Tally, threads: int = 6, page_port: int | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.hosts = {"app": (parsed.hostname or "127.0.0.1", parsed.port or 80)}
        if page_port is not None:
            self.hosts["page"] = ("127.0.0.1", page_port)
        self.tally = tally
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fuzz-send")
        self.slots = threading.BoundedSemaphore(threads * 4)
        self.local = threading.local()

    def submit(self, request: Request) -> None:
        self.slots.acquire()
        future = self.pool.submit(self._send, request)
        future.add_done_callback(lambda _: self.slots.release())

    def _send(self, request: Request) -> None:
        try:
            if request.again:  # a replay: the first answer is the original's, the second is checked
                self._exchange(request)
            status, answer, elapsed = self._exchange(request)
        except (OSError, http.client.HTTPException) as exc:
            self.tally.record(request, None, f"{type(exc).__name__}: {exc}".encode())
            return
        self.tally.record(request, status, answer, elapsed)

    def _exchange(self, request: Request) -> tuple[int, bytes, float]:
        """(status, answer, seconds from the first byte sent to the last read)."""
        if not hasattr(self.local, "connections"):
            self.local.connections = {}
        connections: dict[str, http.client.HTTPConnection | None] = self.local.connections
        for attempt in (1, 2):  # a keep-alive connection the server closed is retried once
            connection = connections.get(request.target)
            if connection is None:
                host, port = self.hosts[request.target]
                connection = connections[request.target] = http.client.HTTPConnection(host, port, timeout=60)
            began = time.monotonic()
            try:
                declared = request.declared
                if declared is None and len(request.body) > MAX_SLACK_BODY:
                    declared = len(request.body)
                if declared is not None:
                    # Refused (413) from its declared length, before a byte of it is read: the
                    # server answers and closes while a client would still be sending. Send the
                    # headers only, as a client waiting for `100 Continue` does, and read that.
                    connection.putrequest(request.method, request.path)
                    for name, value in {**request.headers, "Content-Length": str(declared)}.items():
                        connection.putheader(name, value)
                    connection.endheaders()
                else:
                    connection.request(request.method, request.path, body=request.body, headers=request.headers)
                reply = connection.getresponse()
                answer = reply.read()
                elapsed = time.monotonic() - began
                if reply.will_close or reply.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connections[request.target] = None
                return reply.status, answer, elapsed
            except (OSError, http.client.HTTPException):
                connection.close()
                connections[request.target] = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def fuzz(strategy: st.SearchStrategy[Request], count: int, seed: int, sender: Sender) -> None:
    """Generate and send `count` requests: hypothesis draws them, without shrinking or a database."""
    done = 0
    while done < count:
        batch = count - done

        @hypothesis_seed(seed + done)
        @settings(
            max_examples=batch,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def one(request: Request) -> None:
            nonlocal done
            if done < count:
                sender.submit(request)
                done += 1

        one()
