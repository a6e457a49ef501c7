"""The crash loop's servers: forks of one warm interpreter (`chaos._crash_support.zygote`),
each running the real `countersign serve`; the zygote reports each one's death, so a killed
server is waited for, never guessed at.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path


class Server:
    """One forked `countersign serve`; the zygote reports its death."""

    def __init__(self, servers: Servers, pid: int) -> None:
        self.servers, self.pid = servers, pid

    def poll(self) -> int | None:
        """Its wait status once it has died, else None."""
        return self.servers.status(self.pid, timeout_s=0)

    def kill(self) -> int:
        with suppress(ProcessLookupError):  # it may have died by itself a moment ago
            os.kill(self.pid, signal.SIGKILL)
        return self.wait()

    def interrupt(self, timeout_s: float = 30.0) -> int:
        """SIGINT (a graceful stop), then SIGKILL if it is still there after `timeout_s`."""
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        status = self.servers.status(self.pid, timeout_s=timeout_s)
        return self.kill() if status is None else status

    def wait(self) -> int:
        status = self.servers.status(self.pid, timeout_s=60)
        if status is None:
            raise RuntimeError(f"server {self.pid} did not die")
        return status


class Servers:
    """Starts servers as forks of one warm interpreter (`chaos._crash_support.zygote`)."""

    def __init__(self, env: dict[str, str], workdir: Path, log_path: Path) -> None:
        self.log_path = log_path
        bootstrap = "from chaos._crash_support import zygote; zygote()"
        with log_path.open("ab") as log:
            self.zygote = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", bootstrap],
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._started: queue.Queue[int] = queue.Queue()
        self._statuses: dict[int, int] = {}
        self._died = threading.Condition()
        self._gone = False  # the zygote's output has ended
        threading.Thread(target=self._read, name="zygote-reader", daemon=True).start()

    def _read(self) -> None:
        """Starts go to whoever asked for one; deaths are kept by pid, whoever waits for them."""
        assert self.zygote.stdout is not None
        for line in self.zygote.stdout:
            reply = json.loads(line)
            if "started" in reply:
                self._started.put(reply["started"])
            else:
                with self._died:
                    self._statuses[reply["pid"]] = reply["status"]
                    self._died.notify_all()
        with self._died:  # the zygote is gone: no more news
            self._gone = True
            self._died.notify_all()

    def start(self, port: int, clock_offset_s: float = 0.0) -> Server:
        # One process a server: its SIGKILL is a crash of all that serves (with `--workers N` the
        # master's death is a graceful stop of its workers, and tool calls run under the
        # workers' pids). Replicas are several such servers on one database.
        argv = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        order = {"argv": argv, "log": str(self.log_path), "clock_offset_s": clock_offset_s}
        assert self.zygote.stdin is not None
        self.zygote.stdin.write(json.dumps(order) + "\n")
        self.zygote.stdin.flush()
        try:
            return Server(self, self._started.get(timeout=60))
        except queue.Empty:
            raise RuntimeError(f"the zygote did not start a server; see {self.log_path}") from None

    def status(self, pid: int, timeout_s: float) -> int | None:
        """Its wait status once it has died; None if it is still alive after `timeout_s`."""
        with self._died:
            self._died.wait_for(lambda: pid in self._statuses or self._gone, timeout_s)
            if pid not in self._statuses and self._gone:
                raise RuntimeError(f"the zygote exited ({self.zygote.poll()}); see {self.log_path}")
            return self._statuses.get(pid)

    def close(self) -> None:
        if self.zygote.poll() is None:
            assert self.zygote.stdin is not None
            self.zygote.stdin.close()  # its loop ends
            try:
                self.zygote.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.zygote.kill()
                self.zygote.wait()
