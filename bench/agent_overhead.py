"""The agent runtime's own cost per whole tool turn, with a model that answers instantly, on SQLite and PostgreSQL.

Each task has `--steps` model turns: the first ones call a low-risk idempotent tool on an
`auto` task type (so no person is asked), the last one answers in text. Tasks run one at a
time through the real `AgentRunner` and `Executor`, and every unit of work is timed apart:

- `step`: a runner unit that asked the model (lease, budget, request, reply recorded, gate);
- `resume`: a runner unit that handed the turn's tool results back to the conversation (none
  when the executor's outcome does it, as here: the runner and the executor are wired as in
  `serve`, so the tool's action is claimed where it is drafted);
- `runner`: both kinds together (one `AgentRunner.run_once()` that did something);
- `executor`: one `Executor.run_once()` that ran and recorded an action (claiming it first
  when it was not claimed where drafted);
- `turn`: a whole tool turn, every unit from a step that drafts a tool call up to the next
  step (the executor's run and the hand-back of the results included), summed per turn.

Idle polls (nothing to do) and the warm-up tasks are not counted. The goal is ≤ 10 ms p50
per whole tool turn on PostgreSQL; the per-step line (one runner unit plus one executor unit)
is printed beside it. The sessions are set up as `serve` sets them up: on PostgreSQL an audit
`Chainer` thread links the events the commits leave unchained (as in `bot/serve.py`); on
SQLite each transaction chains its own. The statements, commits and pool checkouts of a whole
turn are counted on this thread (the chainer's are not: they are batched, off the turn's
path), and the CPU per task of this thread and of the process's other threads, which compete
with it for the interpreter lock.

    .venv/bin/python bench/agent_overhead.py [--tasks 200] [--steps 3] [--warmup 20]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local
`postgres` superuser); it is skipped with a message if unreachable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Connection, Engine, event, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import tool
from agent.executor import Executor
from agent.model import ModelReply, ModelRequest, Usage
from agent.runner import AgentRunner
from agent.tasks import submit_task
from agent.tools import load_tool_modules
from approvals.audit import AFTER_COMMIT
from approvals.chainer import Chainer
from bench.databases import postgres_database, sqlite_database
from core.clock import SystemClock
from core.config import Config, check_tool_names
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Task

GOAL_MS = 10.0
UNITS = ("step", "resume", "runner", "executor", "turn")


@tool(risk="low", idempotent=True)
def bench_echo(n: int) -> dict[str, int]:
    """Return its input: a tool that costs nothing, so only the runtime is measured."""
    return {"n": n}


class InstantModel:
    """A `ModelClient` with no latency: a tool call each turn until the last, which answers in text."""

    def __init__(self, steps: int) -> None:
        self.steps, self.calls = steps, 0
        self.tool_turn = False  # whether the last reply called a tool

    def complete(self, request: ModelRequest) -> ModelReply:
        self.calls += 1
        turn = sum(1 for message in request.messages if message["role"] == "assistant")
        self.tool_turn = turn < self.steps - 1
        if self.tool_turn:
            tool_input = {"n": turn, "rationale": "bench", "confidence": 1.0}
            content = [{"type": "tool_use", "id": f"toolu_bench_{turn}", "name": "bench_echo", "input": tool_input}]
            return ModelReply(content, "tool_use", request.model, Usage(input_tokens=200, output_tokens=20))
        return ModelReply([{"type": "text", "text": "done"}], "end_turn", request.model, Usage(200, 5))


@dataclass(frozen=True)
class Unit:
    """One unit of work that did something: what it was, its time, what it issued."""

    kind: str  # step, resume or executor
    ms: float
    statements: int
    commits: int
    checkouts: int
    drafted: bool = False  # a step whose reply called a tool: it opens a tool turn


class Counter:
    """Statements, commits and pool checkouts of this thread, not the chainer's."""

    def __init__(self, engine: Engine) -> None:
        self.thread, self.counts = threading.get_ident(), {"statements": 0, "commits": 0, "checkouts": 0}
        event.listen(engine, "before_cursor_execute", lambda *_: self._count("statements"))
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", lambda *_: self._count("checkouts"))

    def _commit(self, connection: Connection) -> None:
        # A statement run outside a transaction (the runner's lease on PostgreSQL) commits nothing.
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            self._count("commits")

    def _count(self, name: str) -> None:
        if threading.get_ident() == self.thread:
            self.counts[name] += 1

    def timed(self, kind: str, work: Callable[[], bool]) -> Unit | None:
        """Run one unit; None if it found nothing to do (an idle poll)."""
        before, began = dict(self.counts), time.perf_counter()
        if not work():
            return None
        ms = (time.perf_counter() - began) * 1000
        return Unit(kind, ms, **{name: self.counts[name] - before[name] for name in before})


def tool_turns(units: list[Unit]) -> list[list[Unit]]:
    """A task's units cut into whole tool turns: from a step that drafted to the next step."""
    turns: list[list[Unit]] = []
    current: list[Unit] | None = None
    for unit in units:
        if unit.kind == "step":
            current = [unit] if unit.drafted else None
            if current is not None:
                turns.append(current)
        elif current is not None:
            current.append(unit)
    return turns


def make_config(steps: int) -> Config:
    task_type = {
        "instructions": "Echo numbers.",
        "tools": ["bench_echo"],
        "autonomy": "auto",
        "budget": {"max_steps": steps + 1},
    }
    return Config.model_validate(
        {"slack": {"approvals_channel": "C0BENCH"}, "tools": {"modules": [__name__]}, "task_types": {"echo": task_type}}
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench_backend(url: str, backend: str, tasks: int, steps: int, warmup: int) -> dict[str, list[float]]:
    engine = make_engine(url)
    upgrade(engine)
    sessions, clock, config = make_sessionmaker(engine), SystemClock(), make_config(steps)
    chainer = None
    if backend == "postgres":  # as `serve` does (bot/serve.py, `Process._chainer`)
        chainer = Chainer(sessions)
        sessions.configure(info={AFTER_COMMIT: chainer.poke})
        chainer.start()
    # The tool lives in this script: importing `__main__` by name finds it already loaded.
    registry = load_tool_modules(config.tools.modules)
    assert not check_tool_names(config, registry.names())
    model = InstantModel(steps)
    runner, executor = AgentRunner(sessions, config, registry, model, clock), Executor(sessions, registry, clock)
    runner.executor = executor  # as `serve` wires them (bot/serve.py, `Process.workers`)
    counter = Counter(engine)
    units: list[Unit] = []
    cpu = (0.0, 0.0)  # this thread's and the whole process's, from the first measured task on
    for number in range(warmup + tasks):
        if number == warmup:
            cpu = (time.thread_time(), time.process_time())
        with sessions.begin() as session:
            submit_task(session, config, "echo", f"echo task {number}", now=clock.now(), requester="U0BENCH")
        done: list[Unit] = []
        while True:
            calls = model.calls
            worked = counter.timed("resume", runner.run_once)
            if worked is not None and model.calls > calls:
                worked = replace(worked, kind="step", drafted=model.tool_turn)
            ran = counter.timed("executor", executor.run_once)
            done += [unit for unit in (worked, ran) if unit is not None]
            if worked is None and ran is None:
                break
        if number >= warmup:
            units += done
    mine, everyone = time.thread_time() - cpu[0], time.process_time() - cpu[1]
    if chainer is not None:
        chainer.close()
    with sessions() as session:
        finished = session.scalar(select(func.count()).select_from(Task).where(Task.state == "succeeded"))
    engine.dispose()
    if finished != warmup + tasks:
        raise SystemExit(f"{backend}: only {finished} of {warmup + tasks} tasks succeeded")
    turns = tool_turns(units)
    timings = {kind: [unit.ms for unit in units if unit.kind == kind] for kind in ("step", "resume", "executor")}
    timings["runner"] = [unit.ms for unit in units if unit.kind in ("step", "resume")]
    timings["turn"] = [sum(unit.ms for unit in turn) for turn in turns]
    for name in UNITS:
        values = timings[name]
        if not values:
            print(f"{backend:<8} {name:<8} none (its work is done inside the other units)", flush=True)
            continue
        print(
            f"{backend:<8} {name:<8} p50 {percentile(values, 0.5):6.2f} ms   p99 {percentile(values, 0.99):6.2f} ms"
            f"   n={len(values)}",
            flush=True,
        )
    timings["statements"] = [float(sum(unit.statements for unit in turn)) for turn in turns]
    timings["commits"] = [float(sum(unit.commits for unit in turn)) for turn in turns]
    timings["checkouts"] = [float(sum(unit.checkouts for unit in turn)) for turn in turns]
    shape = ", ".join(
        f"{kind} {statistics.mean(sum(unit.kind == kind for unit in turn) for turn in turns):.1f}"
        for kind in ("step", "executor", "resume")
    )
    print(f"{backend:<8} units per whole tool turn: {shape}", flush=True)
    # The other threads compete for the interpreter lock: on PostgreSQL the chainer links the
    # events each commit leaves, beside the next unit (tool threads cost next to nothing here).
    print(
        f"{backend:<8} CPU per task ({steps - 1} tool turns and an answer): this thread {mine / tasks * 1000:.2f} ms,"
        f" the process's other threads (chainer, tool calls) {(everyone - mine) / tasks * 1000:.2f} ms",
        flush=True,
    )
    return timings


def p50(values: list[float]) -> float:
    return percentile(values, 0.5) if values else 0.0


def summary(backend: str, timings: dict[str, list[float]]) -> list[str]:
    runner, executor = p50(timings["runner"]), p50(timings["executor"])
    turn = p50(timings["turn"])
    verdict = "PASS" if turn <= GOAL_MS else "MISS"
    units = " + ".join(f"{kind} {p50(timings[kind]):.2f}" for kind in ("step", "executor", "resume") if timings[kind])
    issued = ", ".join(
        f"{statistics.mean(timings[name]):.1f} {name}" for name in ("statements", "commits", "checkouts")
    )
    return [
        f"{backend}: agent step p50 = runner {runner:.2f} + executor {executor:.2f} = {runner + executor:.2f} ms",
        f"{backend}: whole tool turn p50 = {turn:.2f} ms ({units} at their p50s; {issued} per turn), "
        f"goal ≤ {GOAL_MS:.0f} ms: {verdict}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200, help="measured tasks per backend (default 200)")
    parser.add_argument("--steps", type=int, default=3, help="model turns per task, the last one text (default 3)")
    parser.add_argument("--warmup", type=int, default=20, help="tasks run first and not measured (default 20)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2, so that a task calls the tool at least once")
    began = time.perf_counter()
    lines = []
    with ExitStack() as stack:
        databases = {"sqlite": stack.enter_context(sqlite_database())}
        if not args.skip_postgres:
            pg_url = stack.enter_context(postgres_database("agent"))
            if pg_url is not None:
                databases["postgres"] = pg_url
        for backend, url in databases.items():
            lines += summary(backend, bench_backend(url, backend, args.tasks, args.steps, args.warmup))
    for line in lines:
        print("summary " + line)
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
