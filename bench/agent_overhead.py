"""The agent runtime's own cost per step, with a model that answers instantly, on SQLite and PostgreSQL.

Each task has `--steps` model turns: the first ones call a low-risk idempotent tool on an
`auto` task type (so no person is asked), the last one answers in text. Tasks run one at a
time through the real `AgentRunner` and `Executor`, and every unit of work is timed apart:

- `step`: a runner unit that asked the model (lease, budget, request, reply recorded, gate);
- `resume`: a runner unit that handed the turn's tool results back to the conversation;
- `runner`: both kinds together (one `AgentRunner.run_once()` that did something);
- `executor`: one `Executor.run_once()` that claimed, ran and recorded an action.

Idle polls (nothing to do) and the warm-up tasks are not counted. The goal is ≤ 10 ms p50
per agent step, an agent step being one runner unit plus one executor unit.

    .venv/bin/python bench/agent_overhead.py [--tasks 200] [--steps 3] [--warmup 20]

PostgreSQL: a temporary database is created and dropped on the server named by
COUNTERSIGN_BENCH_POSTGRES_URL (else COUNTERSIGN_TEST_POSTGRES_URL, else the local
`postgres` superuser); it is skipped with a message if unreachable.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import tool
from agent.executor import Executor
from agent.model import ModelReply, ModelRequest, Usage
from agent.runner import AgentRunner
from agent.tasks import submit_task
from agent.tools import load_tool_modules
from bench.databases import postgres_database, sqlite_database
from core.clock import SystemClock
from core.config import Config, check_tool_names
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Task

GOAL_MS = 10.0
UNITS = ("step", "resume", "runner", "executor")


@tool(risk="low", idempotent=True)
def bench_echo(n: int) -> dict[str, int]:
    """Return its input: a tool that costs nothing, so only the runtime is measured."""
    return {"n": n}


class InstantModel:
    """A `ModelClient` with no latency: a tool call each turn until the last, which answers in text."""

    def __init__(self, steps: int) -> None:
        self.steps, self.calls = steps, 0

    def complete(self, request: ModelRequest) -> ModelReply:
        self.calls += 1
        turn = sum(1 for message in request.messages if message["role"] == "assistant")
        if turn < self.steps - 1:
            tool_input = {"n": turn, "rationale": "bench", "confidence": 1.0}
            content = [{"type": "tool_use", "id": f"toolu_bench_{turn}", "name": "bench_echo", "input": tool_input}]
            return ModelReply(content, "tool_use", request.model, Usage(input_tokens=200, output_tokens=20))
        return ModelReply([{"type": "text", "text": "done"}], "end_turn", request.model, Usage(200, 5))


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
    # The tool lives in this script: importing `__main__` by name finds it already loaded.
    registry = load_tool_modules(config.tools.modules)
    assert not check_tool_names(config, registry.names())
    model = InstantModel(steps)
    runner, executor = AgentRunner(sessions, config, registry, model, clock), Executor(sessions, registry, clock)
    timings: dict[str, list[float]] = {unit: [] for unit in UNITS}
    for number in range(warmup + tasks):
        kept = {unit: [] for unit in UNITS} if number < warmup else timings
        with sessions.begin() as session:
            submit_task(session, config, "echo", f"echo task {number}", now=clock.now(), requester="U0BENCH")
        while True:
            calls, began = model.calls, time.perf_counter()
            worked = runner.run_once()
            if worked:
                elapsed = (time.perf_counter() - began) * 1000
                kept["step" if model.calls > calls else "resume"].append(elapsed)
                kept["runner"].append(elapsed)
            began = time.perf_counter()
            ran = executor.run_once()
            if ran:
                kept["executor"].append((time.perf_counter() - began) * 1000)
            if not (worked or ran):
                break
    with sessions() as session:
        done = session.scalar(select(func.count()).select_from(Task).where(Task.state == "succeeded"))
    engine.dispose()
    if done != warmup + tasks:
        raise SystemExit(f"{backend}: only {done} of {warmup + tasks} tasks succeeded")
    for unit in UNITS:
        values = timings[unit]
        print(
            f"{backend:<8} {unit:<8} p50 {percentile(values, 0.5):6.2f} ms   p99 {percentile(values, 0.99):6.2f} ms"
            f"   n={len(values)}",
            flush=True,
        )
    return timings


def summary(backend: str, timings: dict[str, list[float]]) -> str:
    runner, executor = percentile(timings["runner"], 0.5), percentile(timings["executor"], 0.5)
    step = runner + executor
    turn = percentile(timings["step"], 0.5) + percentile(timings["resume"], 0.5) + executor
    verdict = "PASS" if step <= GOAL_MS else "MISS"
    return (
        f"{backend}: agent step p50 = runner {runner:.2f} + executor {executor:.2f} = {step:.2f} ms, "
        f"goal ≤ {GOAL_MS:.0f} ms: {verdict}  (a whole tool turn, step + executor + resume: {turn:.2f} ms)"
    )


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
            lines.append(summary(backend, bench_backend(url, backend, args.tasks, args.steps, args.warmup)))
    for line in lines:
        print("summary " + line)
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
