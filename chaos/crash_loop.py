"""Crash loop: SIGKILL a real `countersign serve` at random moments, restart it, carry on; then
prove that nothing ran twice, no audit event went missing and nothing is stuck.

Each round starts `countersign serve` (a fork of a warm interpreter running the real CLI, see
`chaos._crash_support`; SQLite file database, or a temporary PostgreSQL database with
`--backend postgres`), drives work at it as Slack would (signed slash commands,
signed Approve / Reject / Veto clicks) and kills it with SIGKILL after a random delay, while
clicks, model calls (the fake Messages API in this process sometimes holds a reply for
seconds), tool calls (`chaos._crash_support`: they nap, then record raw calls and effects in
real tables), outbox sends (the Slack emulator sometimes hangs a method) and escalation steps
(a short chain per task type) are under way. With `--replicas N` (PostgreSQL) N servers run
at once on the one database, the clicks spread over them; each round kills one of them (a
quarter of the rounds all of them) and starts replacements, so the survivors take over the
dead one's leases as they run out. `--min-tool-kills K` sizes the run: after `--rounds`, up
to as many rounds again aim at tool calls until K rounds have killed a server mid-call (the
run fails if they still have not). After the last round a final server settles
everything (its clock moved past every dead lease), then the checks run:

- duplicates: an idempotent tool's effects per idempotency key ≤ 1 (raw calls may repeat:
  a replay after a crash), exactly 1 for a succeeded action; a non-idempotent tool's raw
  calls ≤ 1 per action, and one killed mid-call leaves its action `unknown`; no tool ran for
  an action that was never approved;
- audit: `countersign audit verify` exits 0, and every action's state is the `to_state` of
  its latest audit event, every move linking to the previous one;
- stuck: no action left drafted, approved, executing or due; `unknown` only for a
  non-idempotent tool whose executor died holding the lease; no task running, no timer due,
  no outbox row undelivered.

    .venv/bin/python -m chaos.crash_loop [--rounds 100] [--backend sqlite|postgres] [--replicas N]
        [--min-tool-kills K] [--seed N] [--verbose]

Prints one summary line (problems, if any, on stderr before it) and exits 1 on a failure.
PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local `postgres`
superuser).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chaos import _crash_support as support  # noqa: E402
from chaos.common import free_port, healthy, note, summary  # noqa: E402
from chaos.crash_checks import busy, check  # noqa: E402
from chaos.crash_config import (  # noqa: E402
    ADMIN,
    ADMINS,
    ALICE,
    APPROVALS,
    BOB,
    CHANNELS,
    CONFIG,
    HEALTH_DEADLINE_S,
    REQUESTERS,
    SETTLE_DEADLINE_S,
    SETTLE_OFFSET_S,
    SLACK_HANG_METHODS,
)
from chaos.crash_servers import Server, Servers  # noqa: E402
from chaos.crash_traffic import CountingSlack, Driver, Model  # noqa: E402
from chaos.stage import stage  # noqa: E402
from core.db import make_engine, normalize_url  # noqa: E402

NAME = "crash_loop"


@dataclass
class Kills:
    rounds: int = 0
    before_healthy: int = 0
    moments: Counter[str] = field(default_factory=Counter)
    startup_s: list[float] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)


@dataclass
class Replica:
    server: Server
    url: str


@dataclass
class Fleet:
    """The loop's live servers: up to `size` at once, all on the one database."""

    servers: Servers
    size: int
    live: list[Replica] = field(default_factory=list)

    def fill(self) -> list[Replica]:
        """Start servers until `size` run; the new ones."""
        new = []
        while len(self.live) < self.size:
            port = free_port()
            new.append(Replica(self.servers.start(port), f"http://127.0.0.1:{port}"))
            self.live.append(new[-1])
        return new

    def kill(self, victims: list[Replica]) -> None:
        for replica in list(victims):
            replica.server.kill()
            self.live.remove(replica)

    def stop(self) -> None:
        """A graceful stop of every live server (SIGINT), as a rolling restart would."""
        for replica in self.live:
            replica.server.interrupt()
        self.live.clear()


def run_round(
    round_no: int,
    fleet: Fleet,
    slack: CountingSlack,
    model: Model,
    reader: Engine,
    rng: random.Random,
    kills: Kills,
    max_delay_s: float,
    *,
    aim_at_tool: bool = False,
) -> None:
    if rng.random() < 0.5:
        slack.hang(rng.choice(SLACK_HANG_METHODS), rng.uniform(0.3, 2.0), times=rng.randint(1, 3))
    went = time.monotonic()
    new = fleet.fill()
    try:
        _kill_at_random(round_no, fleet, new, went, slack, model, reader, rng, kills, max_delay_s, aim_at_tool)
    except BaseException:  # the round failed half-way: leave no server behind
        fleet.kill(fleet.live)
        raise


def _kill_at_random(
    round_no: int,
    fleet: Fleet,
    new: list[Replica],
    went: float,
    slack: CountingSlack,
    model: Model,
    reader: Engine,
    rng: random.Random,
    kills: Kills,
    max_delay_s: float,
    aim_at_tool: bool,
) -> None:
    stop = threading.Event()
    driver: Driver | None = None
    thread: threading.Thread | None = None
    started = went
    if new and rng.random() < 0.1:  # mid-startup: one just started
        victims = [rng.choice(new)]
        kill_at = went + rng.uniform(0.05, 0.6)
    else:  # once all serve: the delay counts from there, however slow the machine is today
        deadline = went + HEALTH_DEADLINE_S
        for replica in fleet.live:
            while not healthy(replica.url, timeout_s=0.5):
                if replica.server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start in round {round_no} (status {replica.server.poll()})")
                time.sleep(0.02)
        started = time.monotonic()
        urls = [replica.url for replica in fleet.live]
        driver = Driver(urls, slack, reader, random.Random(rng.getrandbits(64)), round_no)
        thread = threading.Thread(target=driver.run, args=(stop,), name=f"driver-{round_no}", daemon=True)
        thread.start()
        kill_at = started + rng.uniform(0.1, max_delay_s)
        # Replicas: one of them dies, now and then all at once.
        victims = list(fleet.live) if rng.random() < 0.25 else [rng.choice(fleet.live)]
    # Tool calls are rare and short: some rounds watch for one and kill its server then.
    aim_at_tool = driver is not None and (aim_at_tool or rng.random() < 0.2)
    if aim_at_tool:
        kill_at += 2.0  # a longer round, for an execution to come along
    while time.monotonic() < kill_at:
        for replica in fleet.live:
            if replica.server.poll() is not None:
                raise RuntimeError(f"serve exited by itself (status {replica.server.poll()}) in round {round_no}")
        if aim_at_tool:
            calling = tools_mid_call(reader)
            if hit := [replica for replica in fleet.live if calling[replica.server.pid]]:
                victims = hit
                break
        time.sleep(0.01)
    if driver is not None and not aim_at_tool and rng.random() < 0.3:  # clicks take ms: aim some kills at them
        driver.burst()
        time.sleep(rng.uniform(0.0, 0.03))
    if driver is None:
        kills.before_healthy += 1
    # In flight anywhere (with replicas, a survivor's share counts too), except tool calls: those
    # are counted for the killed servers only, after they died.
    moments = {"click": driver.in_flight.since(went) if driver else 0, "model": model.in_flight.since(went)}
    moments["slack"] = slack.in_flight.since(went)
    fleet.kill(victims)
    stop.set()
    if thread is not None:
        thread.join(timeout=10)
    calling = tools_mid_call(reader)
    moments["tool"] = sum(calling[replica.server.pid] for replica in victims)
    kills.rounds += 1
    kills.startup_s.append(started - went if driver is not None else float("nan"))
    kills.moments.update({name: 1 for name, count in moments.items() if count})
    if driver is not None:
        kills.requests.update(driver.sent)


def tools_mid_call(reader: Engine) -> Counter[int]:
    """Tool calls begun and not finished, by the pid of the server that made them."""
    calls = support.CALLS
    with reader.connect() as conn:
        rows = conn.execute(
            select(calls.c.pid, func.count()).where(calls.c.finished_at.is_(None)).group_by(calls.c.pid)
        ).all()
    return Counter({pid: count for pid, count in rows})


def settle(
    servers: Servers, reader: Engine, slack: CountingSlack, model: Model, *, verbose: bool = False
) -> tuple[bool, dict[str, int], float]:
    """Start a last server past every dead lease and wait until nothing is due; stop it gently."""
    slack.clear_faults()
    model.hang_share = 0.0
    port, began = free_port(), time.monotonic()
    server = servers.start(port, clock_offset_s=SETTLE_OFFSET_S)
    url = f"http://127.0.0.1:{port}"
    deadline = began + HEALTH_DEADLINE_S
    while not healthy(url, timeout_s=0.5):
        if server.poll() is not None or time.monotonic() > deadline:
            return False, {"settling server did not start": 1}, time.monotonic() - began
        time.sleep(0.05)
    quiet, remaining = 0, {"not polled": 1}
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while time.monotonic() < deadline and quiet < 4:
        time.sleep(0.3)
        remaining = busy(reader, datetime.now(UTC) + timedelta(seconds=SETTLE_OFFSET_S))
        quiet = 0 if remaining else quiet + 1
        if verbose:
            note(NAME, f"settling {time.monotonic() - began:5.1f} s: {remaining or 'quiet'}")
    server.interrupt()
    return quiet >= 4, remaining, time.monotonic() - began


# -- main ----------------------------------------------------------------------------------


def prepare(url: str) -> None:
    engine = make_engine(url)
    try:
        support.create_tables(engine)
    finally:
        engine.dispose()


def keep_sqlite(source: str, target: Path) -> None:
    """Copy the database out of its temporary directory (the backup API includes the WAL)."""
    with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(target)) as copy:
        live.backup(copy)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="kill/restart rounds (default 100)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument(
        "--max-delay", type=float, default=2.0, help="latest kill, in s after the server answers (default 2.0)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="servers at once on the database (PostgreSQL only; default 1)"
    )
    parser.add_argument(
        "--min-tool-kills",
        type=int,
        default=0,
        help="rounds that must kill a server mid-tool-call: up to --rounds more rounds aim at tools until then",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (config, server logs)")
    parser.add_argument("--verbose", action="store_true", help="a progress line per round on stderr")
    args = parser.parse_args()
    if args.replicas < 1 or (args.replicas > 1 and args.backend != "postgres"):
        parser.error("--replicas: 1, or more with --backend postgres (SQLite serves one process)")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cs-chaos-crash-"))
    model, slack = Model(random.Random(rng.getrandbits(64))), CountingSlack()
    with stage(
        NAME,
        backend=args.backend,
        logs=workdir,  # kept on a failure or with --keep, removed below otherwise
        channels=[APPROVALS, ADMINS, *CHANNELS],
        users=[*REQUESTERS, ALICE, BOB, ADMIN],
        config=CONFIG,
        model=model,
        slack=slack,
    ) as world:
        url = world.url
        world.on_close(model.closing.set)  # runs before the fake closes: releases held calls
        prepare(url)
        reader = create_engine(normalize_url(url))
        world.on_close(reader.dispose)
        servers = Servers(world.env, workdir, workdir / "serve.log")
        world.on_close(servers.close)
        kills, fleet = Kills(), Fleet(servers, args.replicas)
        round_no = 0
        while round_no < args.rounds or (kills.moments["tool"] < args.min_tool_kills and round_no < 2 * args.rounds):
            aim = round_no >= args.rounds  # an extra round, for the kills mid-tool asked for
            run_round(round_no, fleet, slack, model, reader, rng, kills, args.max_delay, aim_at_tool=aim)
            if args.verbose:
                note(NAME, f"round {round_no}: started in {kills.startup_s[-1]:.2f} s, {kills.moments}")
            round_no += 1
        fleet.stop()
        settled, remaining, settle_s = settle(servers, reader, slack, model, verbose=args.verbose)
        servers.close()
        report = check(reader, world.env, workdir, datetime.now(UTC) + timedelta(seconds=SETTLE_OFFSET_S))
        if not settled:
            report.fail("stuck", f"not settled within {SETTLE_DEADLINE_S:.0f} s: {remaining}")
        if kills.moments["tool"] < args.min_tool_kills:
            report.problems.append(
                f"sizing: {kills.moments['tool']} rounds killed a server mid-tool-call in {kills.rounds} rounds,"
                f" fewer than the {args.min_tool_kills} asked for (--min-tool-kills)"
            )
        if (args.keep or report.problems) and url.startswith("sqlite:///"):
            keep_sqlite(url.removeprefix("sqlite:///"), workdir / "chaos.db")
    passed = not report.problems
    for problem in report.problems[:50]:
        print(problem, file=sys.stderr)
    if len(report.problems) > 50:
        print(f"... and {len(report.problems) - 50} more", file=sys.stderr)
    if args.keep or not passed:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    fields = {
        "rounds": kills.rounds,
        "backend": args.backend,
        "replicas": args.replicas,
        "seed": seed,
        "killed_mid": ",".join(f"{name}:{kills.moments[name]}" for name in ("click", "model", "tool", "slack"))
        + f",startup:{kills.before_healthy}",
        "tasks": sum(report.tasks.values()),
        "actions": ",".join(f"{state}:{count}" for state, count in sorted(report.states.items())),
        "replays": report.replays,
        "unknown_before_call": report.unknown_before_call,
        "requests": sum(kills.requests.values()),
        "audit_events": report.audit_events,
        "verify": "ok" if report.verify.startswith("ok") else "BROKEN",
        "duplicates": report.duplicates,
        "lost_audit": report.lost_audit,
        "stuck": report.stuck,
        "settle_s": f"{settle_s:.1f}",
        "total_s": f"{time.monotonic() - began:.0f}",
    }
    return summary(NAME, fields, passed)


if __name__ == "__main__":
    sys.exit(main())
