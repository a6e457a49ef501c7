"""What `make proof` runs (`RUNS`), how it runs one script (`execute`: alone, in its own
process group, with a time limit), and what came out of it (`Outcome`, `Findings`)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
POSTGRES_ADMIN_URL = os.environ.get(
    "COUNTERSIGN_BENCH_POSTGRES_URL",
    os.environ.get("COUNTERSIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
)
TAIL = 15  # lines of output kept in the docs for a failed script


@dataclass(frozen=True)
class Run:
    key: str  # unique; the docs name runs by it
    script: str  # path from the repository root
    args: tuple[str, ...] = ()
    limit_s: float = 300.0
    sizes: str = ""  # what the flags change from the script's defaults, and why

    @property
    def reliability(self) -> bool:
        return self.script.startswith("chaos/")

    def argv(self) -> list[str]:
        # The chaos scripts import their package (`from chaos import tools`): run them as modules.
        if self.reliability:
            return ["-m", self.script.removesuffix(".py").replace("/", "."), *self.args]
        return [self.script, *self.args]

    def command(self) -> str:
        python = Path(os.path.abspath(sys.executable))  # normalized, symlinks kept: the venv's own python
        shown = f".venv/bin/{python.name}" if python.parent == ROOT / ".venv" / "bin" else str(python)
        return shlex.join([shown, *self.argv()])


# Order: the predictable benchmarks first, then the chaos scenarios (a crash loop may leave the
# machine busy for a moment; benchmarks after it would pay for that).
RUNS = (
    # Each ack_latency run measures three apps in turn (bare Bolt, bare Bolt answering when its
    # listener returns, a whole `serve` on PostgreSQL), `--seconds` each.
    Run(
        "ack_latency@30",
        "bench/ack_latency.py",
        ("--rate", "30", "--seconds", "10"),
        150,
        "clicks for 10 s to each app (default 30)",
    ),
    Run(
        "ack_latency@100",
        "bench/ack_latency.py",
        ("--rate", "100", "--seconds", "10"),
        150,
        "clicks for 10 s to each app (default 30)",
    ),
    Run(
        "ack_latency@300",
        "bench/ack_latency.py",
        ("--rate", "300", "--seconds", "10"),
        180,
        "clicks for 10 s to each app (default 30): the goal's 300 clicks/s for 10 s",
    ),
    Run(
        "ack_latency@1000",
        "bench/ack_latency.py",
        ("--rate", "1000", "--seconds", "5"),
        180,
        "clicks for 5 s to each app (default 30): the goal's 1,000 clicks/s for 5 s, the overload path",
    ),
    Run("decisions_vs_updates", "bench/decisions_vs_updates.py", (), 180),
    Run(
        "serve_workers", "bench/serve_workers.py", ("--actions", "400", "--rounds", "2"), 300, "400 clicks in 2 rounds"
    ),
    Run("audit_appends", "bench/audit_appends.py", (), 150),
    Run("long_polls", "bench/long_polls.py", (), 180),
    Run("timers", "bench/timers.py", (), 420),
    Run(
        "timers@5",
        "bench/timers.py",
        ("--max-pending", "1000", "--rate", "5", "--burst", "0"),
        150,
        "the 1x of a 10x pair; no burst (the default run has it)",
    ),
    Run("agent_overhead", "bench/agent_overhead.py", ("--tasks", "100"), 150, "100 tasks (default 200)"),
    Run("rss@10", "bench/rss.py", ("--commands", "10", "--idle", "2"), 120, "the 1x of a 10x pair"),
    Run("rss", "bench/rss.py", (), 150),
    Run("idle_cpu", "bench/idle_cpu.py", ("--seconds", "15", "--settle", "3"), 150, "15 idle seconds (default 20)"),
    # Chaos scenarios, each on both databases (its default first): the cheap and the predictable
    # first, so that a proof running out of time loses the least; slack_faults (a 60 s hang,
    # then its settling) last.
    Run("authorization", "chaos/authorization.py", (), 90),
    Run("authorization@sqlite", "chaos/authorization.py", ("--backend", "sqlite"), 90, "on SQLite"),
    Run(
        "fuzz_inputs",
        "chaos/fuzz_inputs.py",
        (),
        240,
        "10,000 requests, 100 of each of issue #14's shapes and 1,000 at the actions API",
    ),
    Run("fuzz_inputs@pg", "chaos/fuzz_inputs.py", ("--backend", "postgres"), 540, "on PostgreSQL (about 330 s)"),
    Run("click_storm", "chaos/click_storm.py", (), 300, "200 rounds (its default; the issue's full count is 1000)"),
    Run(
        "click_storm@sqlite",
        "chaos/click_storm.py",
        ("--backend", "sqlite", "--replicas", "1"),
        300,
        "on SQLite, one server (SQLite serves one process); 200 rounds",
    ),
    Run("model_faults", "chaos/model_faults.py", (), 240),
    Run("model_faults@sqlite", "chaos/model_faults.py", ("--backend", "sqlite"), 240, "on SQLite"),
    Run("crash_loop", "chaos/crash_loop.py", ("--rounds", "25"), 200, "25 rounds, not 100 (about 5 s a round)"),
    Run(
        "crash_loop@pg",
        "chaos/crash_loop.py",
        ("--rounds", "25", "--backend", "postgres", "--replicas", "2", "--min-tool-kills", "2"),
        300,
        "on PostgreSQL with two replicas; 25 rounds, more (aimed at tool calls) until two killed one mid-call",
    ),
    Run("slack_faults", "chaos/slack_faults.py", (), 360),
    Run("slack_faults@sqlite", "chaos/slack_faults.py", ("--backend", "sqlite"), 360, "on SQLite"),
)


@dataclass
class Outcome:
    run: Run
    status: str  # PASS, FAIL, MISSING
    seconds: float = 0.0
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    problem: str = ""

    def tail(self) -> str:
        lines = [line for line in (self.stdout + "\n" + self.stderr).splitlines() if line.strip()]
        return "\n".join(lines[-TAIL:])

    def printed_summary(self) -> str:
        """The last line on stdout (a chaos script's one summary line), or "" if it printed none."""
        lines = [line for line in self.stdout.splitlines() if line.strip() and not line.startswith("total ")]
        return lines[-1].strip() if lines else ""

    def reports_effect(self) -> bool:
        """A chaos scenario that finished and reported a lost or duplicated effect, or its own FAIL."""
        summary = self.printed_summary()
        return bool(summary) and (any(effects(summary).values()) or summary.endswith("FAIL"))

    def summary_line(self) -> str:
        lines = [line for line in self.stdout.splitlines() if line.strip() and not line.startswith("total ")]
        if lines:
            return lines[-1].strip()
        errors = [line for line in self.stderr.splitlines() if line.strip()]
        return f"no summary line ({self.problem})" + (f"; last on stderr: {errors[-1].strip()}" if errors else "")


@dataclass(frozen=True)
class Figure:
    name: str
    number: str
    goal: str
    result: str  # PASS, MISS, or "—" where no goal is set
    key: str  # the run that produced it


@dataclass(frozen=True)
class Check:
    """An exactly-once check: any lost or duplicated effect fails the proof."""

    name: str
    found: str
    lost: int
    duplicate: int
    passed: bool
    key: str


@dataclass
class Findings:
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    values: dict[tuple[str, str], float] = field(default_factory=dict)  # (run key, metric) → number for growth
    notes: list[str] = field(default_factory=list)


EFFECT = r"(\w*(?:lost|duplicat|twice|stuck|out_of_order|5xx|state[ _]change)\w*)"


def effects(summary: str) -> dict[str, int]:
    """Counts of bad effects named in a chaos summary line."""
    pairs = re.findall(EFFECT + r"\s*[:=]?\s*(\d+)\b", summary, re.I)
    if pairs:
        return {name.lower(): int(count) for name, count in pairs}
    return {name.lower(): int(count) for count, name in re.findall(r"\b(\d+)\s+" + EFFECT, summary, re.I)}


def execute(run: Run, limit_s: float) -> Outcome:
    path = ROOT / run.script
    if not path.exists():
        print(f"== {run.key}: MISSING ({run.script} does not exist)", flush=True)
        return Outcome(run, "MISSING", problem=f"{run.script} does not exist")
    print(f"== {run.key}: {run.command()}  (limit {limit_s:.0f} s)", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    began = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, *run.argv()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a time-out stops its children too
    )
    out: list[str] = []
    err: list[str] = []

    def pump(stream: object, into: list[str], echo: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)
            if echo:
                print(f"   | {line}", end="", flush=True)

    readers = [
        threading.Thread(target=pump, args=(child.stdout, out, True), daemon=True),
        threading.Thread(target=pump, args=(child.stderr, err, False), daemon=True),
    ]
    for reader in readers:
        reader.start()
    problem = ""
    try:
        child.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        problem = f"timed out after {limit_s:.0f} s"
        stop_group(child)
    except KeyboardInterrupt:  # Ctrl-C stops the proof, and the script under way with it
        stop_group(child)
        raise
    for reader in readers:
        reader.join(10)
    seconds = time.perf_counter() - began
    if not problem and child.returncode != 0:
        problem = f"exit status {child.returncode}"
    status = "FAIL" if problem else "PASS"
    print(f"== {run.key}: {status} in {seconds:.0f} s{f' ({problem})' if problem else ''}", flush=True)
    return Outcome(run, status, seconds, child.returncode, "".join(out), "".join(err), problem)


def stop_group(child: subprocess.Popen[str]) -> None:
    """SIGINT first (scripts drop their temporary databases on the way out), then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
