"""Telling the people whose clicks were shed (`bot.admission`) that nothing was recorded.

A flood of clicks is a flood of these notices, sent while the process is busiest: so one thread
sends them, one after the other, over connections kept open per host (Slack's `response_url`s
all live on one host), rather than the after-ack pool opening a connection for each. The ack
never waits for them. A click without a `response_url` (App Home) is told in a direct message.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import ssl
import threading
import urllib.parse
from collections.abc import Callable

from slack_sdk import WebClient

from bot.admission import DecidingClick, busy

log = logging.getLogger(__name__)
# Notices waiting at most; past that a shed click goes untold (logged), rather than memory
# growing without bound during a flood that never ends.
MAX_QUEUED = 10_000
TIMEOUT_S = 10.0


class ShedNotices:
    def __init__(self, client_for: Callable[[str | None], WebClient]) -> None:
        self.client_for = client_for
        self.queue: queue.Queue[DecidingClick] = queue.Queue(MAX_QUEUED)
        self.connections: dict[tuple[str, str, int | None], http.client.HTTPConnection] = {}
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def tell(self, click: DecidingClick) -> None:
        """Queue the notice for `click`'s clicker (sent after the ack, off the request thread)."""
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="shed-notices", daemon=True)
                self.thread.start()
        try:
            self.queue.put_nowait(click)
        except queue.Full:
            log.warning("too many shed clicks waiting to be told: one of %s's goes untold", click.user)

    def join(self) -> None:
        """Wait until every queued notice was sent (or failed)."""
        self.queue.join()

    def _run(self) -> None:
        while True:
            click = self.queue.get()
            try:
                if click.response_url:
                    self._post(click.response_url)
                elif click.user:
                    self.client_for(click.team).chat_postMessage(channel=click.user, text=busy())
            except Exception:
                log.exception("could not tell a shed clicker that countersign is busy")
            finally:
                self.queue.task_done()

    def _post(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        key = (parsed.scheme, parsed.hostname or "", parsed.port)
        body = json.dumps({"text": busy(), "response_type": "ephemeral", "replace_original": False}).encode()
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        headers = {"Content-Type": "application/json;charset=utf-8"}
        while True:
            kept = self.connections.pop(key, None)
            connection = kept or self._connect(*key)
            try:
                connection.request("POST", path or "/", body, headers)
                with connection.getresponse() as reply:
                    reply.read()
                    if reply.status >= 400:
                        log.warning("a shed clicker's response_url answered %s", reply.status)
                self.connections[key] = connection
                return
            except (OSError, http.client.HTTPException):
                connection.close()
                if kept is None:  # a kept-alive connection the other end closed: once more on a new one
                    raise

    @staticmethod
    def _connect(scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=TIMEOUT_S, context=ssl.create_default_context())
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        raise ValueError(f"not an http(s) response_url: {scheme!r}")
