"""What the crash loop puts inside each `countersign serve` it kills: two tools that write
their raw calls and their effects to real tables of the serving database, and a launcher that
imports the whole app before it is told to serve.

The tools (config `tools: {modules: [chaos._crash_support]}`):
- `chaos_idempotent(ref, idempotency_key)` dedupes its effect on the key, as a payment API
  does: a replay after a crash records a second raw call but no second effect.
- `chaos_once(ref)` is not idempotent: every call is a new effect, so the executor must never
  call it twice; killed mid-call, its action must end `unknown`.
Each records the raw call (with the serving process's pid) before it naps a random few ms,
then the effect, then marks the call finished: a call without `finished_at` died mid-call.

The zygote (`python -c "from chaos._crash_support import zygote; zygote()"`) pays the 1.5 s
of imports once; then every server is a fork of it that runs the real CLI (`bot.cli.main
serve`), so a restart costs what `serve` itself does after its imports, and a hundred
restarts fit in minutes on two cores. A clock offset moves a child's `SystemClock` forward:
the final, settling server uses it to stand where the leases of the killed ones have run
out, instead of waiting minutes for them.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, insert, select, text, update

from agent import tool
from core.db import make_engine

METADATA = MetaData()
CALLS = Table(
    "crash_calls",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tool", String(32), nullable=False),
    Column("ref", String(64), nullable=False, index=True),
    Column("key", String(64)),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)
# No unique constraint on purpose: deduping is the idempotent tool's own job, and a duplicate
# effect must be countable, not refused by the database.
EFFECTS = Table(
    "crash_effects",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tool", String(32), nullable=False),
    Column("ref", String(64), nullable=False, index=True),
    Column("key", String(64), index=True),
)
TOOL_TIMEOUT = "5s"  # far above the nap; a timeout would make `unknown` without a crash
_engine: Engine | None = None
_engine_lock = threading.Lock()


def create_tables(engine: Engine) -> None:
    METADATA.create_all(engine)


def _db() -> Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = make_engine(os.environ["DATABASE_URL"])
        return _engine


def _nap() -> None:
    # Mostly a few ms, sometimes most of a second: wide enough for a random kill to land mid-call.
    time.sleep(random.uniform(0.002, 0.03) if random.random() < 0.8 else random.uniform(0.1, 0.8))


def _start(tool_name: str, ref: str, key: str | None) -> int:
    with _db().begin() as conn:
        result = conn.execute(
            insert(CALLS).values(tool=tool_name, ref=ref, key=key, pid=os.getpid(), started_at=datetime.now(UTC))
        )
        key = result.inserted_primary_key
        assert key is not None  # a one-row INSERT always has its primary key
        return int(key[0])


def _finish(call_id: int) -> None:
    with _db().begin() as conn:
        conn.execute(update(CALLS).where(CALLS.c.id == call_id).values(finished_at=datetime.now(UTC)))


@tool(idempotent=True, timeout=TOOL_TIMEOUT)
def chaos_idempotent(ref: str, *, idempotency_key: str) -> dict[str, Any]:
    """Record one effect per idempotency key, however often it is called."""
    call_id = _start("chaos_idempotent", ref, idempotency_key)
    _nap()
    with _db().begin() as conn:
        if conn.dialect.name == "postgresql":  # check-then-insert, serialized per key
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": idempotency_key})
        done = conn.execute(select(EFFECTS.c.id).where(EFFECTS.c.key == idempotency_key)).first()
        if done is None:
            conn.execute(insert(EFFECTS).values(tool="chaos_idempotent", ref=ref, key=idempotency_key))
    _finish(call_id)
    return {"ref": ref, "replayed": done is not None}


@tool(idempotent=False, timeout=TOOL_TIMEOUT)
def chaos_once(ref: str) -> dict[str, Any]:
    """Record an effect on every call: running it twice is a duplicate execution."""
    call_id = _start("chaos_once", ref, None)
    _nap()
    with _db().begin() as conn:
        conn.execute(insert(EFFECTS).values(tool="chaos_once", ref=ref, key=None))
    _finish(call_id)
    return {"ref": ref}


def _shift_clock(offset_s: float) -> None:
    from core import clock

    offset = timedelta(seconds=offset_s)

    def now(self: clock.SystemClock) -> datetime:
        return datetime.now(UTC) + offset

    clock.SystemClock.now = now  # type: ignore[method-assign]


def zygote() -> None:
    """Import the app once, then fork a server per JSON line on stdin (see the module docstring).

    Each line is `{"argv": [...], "log": PATH, "clock_offset_s": N}`; the child's pid is
    written back at once (`{"started": PID}`), and `{"pid": PID, "status": WAITSTATUS}` when
    it has died. Several children may run at once (replicas on one PostgreSQL database): the
    loop waits on stdin with a short timeout and reaps whatever has died in between, one
    thread only, so that every fork is of a single-threaded process.
    """
    import select

    import bot.cli
    import bot.runtime
    import bot.serve  # noqa: F401 - imported before any fork, so that each child starts warm

    pending, children, open_ = b"", 0, True
    while open_ or children:
        if open_ and select.select([0], [], [], 0.02)[0]:
            chunk = os.read(0, 65536)
            open_ = bool(chunk)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    _child(json.loads(line))
                children += 1
                print(json.dumps({"started": pid}), flush=True)
        elif not open_:
            time.sleep(0.02)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children -= 1
            print(json.dumps({"pid": pid, "status": status}), flush=True)


def _child(order: dict[str, Any]) -> None:
    """The forked child: stdio to the log, the clock moved if asked, then the real CLI."""
    import bot.cli

    code = 1
    try:
        log = os.open(order["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        if order.get("clock_offset_s"):
            _shift_clock(float(order["clock_offset_s"]))
        bot.cli.main(args=[str(arg) for arg in order["argv"]], prog_name="countersign")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - a child must never return into the zygote's loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never return into the zygote's loop
