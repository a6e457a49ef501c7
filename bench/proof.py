"""`make proof`: run every benchmark and chaos script once, and write docs/performance.md and
docs/reliability.md from what they print.

Each script runs alone (one at a time: the machine has few cores), in its own process group,
with a time limit; its output is echoed and kept. A script that is missing is recorded as
MISSING, one that fails or runs out of time as FAIL with its last lines, and the run goes on.
Sizes are chosen so that the whole proof fits in 20 minutes on 2 cores (see RUNS); every figure
in the docs carries the exact command that produced it, so any of them can be rerun alone.

    .venv/bin/python bench/proof.py [--only NAME[,NAME]] [--strict] [--budget 1200]

Exit status: 1 if a chaos scenario reported a lost or duplicated effect (or its own FAIL) or a
benchmark's exactly-once check failed (the docs are written anyway, and show which); with
--strict, 2 if a script is missing, crashed or ran out of time; else 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    Run(
        "ack_latency@30",
        "bench/ack_latency.py",
        ("--rate", "30", "--seconds", "20"),
        120,
        "clicks for 20 s (default 30)",
    ),
    Run(
        "ack_latency@100",
        "bench/ack_latency.py",
        ("--rate", "100", "--seconds", "10"),
        150,
        "clicks for 10 s (default 30)",
    ),
    Run(
        "ack_latency@300",
        "bench/ack_latency.py",
        ("--rate", "300", "--seconds", "10"),
        240,
        "clicks for 10 s (default 30)",
    ),
    Run("decisions_vs_updates", "bench/decisions_vs_updates.py", (), 180),
    Run("audit_appends", "bench/audit_appends.py", (), 150),
    Run("timers", "bench/timers.py", (), 300),
    Run("timers@5", "bench/timers.py", ("--max-pending", "1000", "--rate", "5"), 150, "the 1x of a 10x pair"),
    Run("agent_overhead", "bench/agent_overhead.py", ("--tasks", "100"), 150, "100 tasks (default 200)"),
    Run("rss@10", "bench/rss.py", ("--commands", "10", "--idle", "2"), 120, "the 1x of a 10x pair"),
    Run("rss", "bench/rss.py", (), 150),
    # Chaos scenarios: the cheap and the predictable first, so that a proof running out of time
    # loses the least; slack_faults (a 60 s hang, then its settling) last.
    Run("authorization", "chaos/authorization.py", (), 90),
    Run("fuzz_inputs", "chaos/fuzz_inputs.py", (), 150),
    Run("click_storm", "chaos/click_storm.py", (), 240, "200 rounds (its default; the issue's full count is 1000)"),
    Run("model_faults", "chaos/model_faults.py", (), 240),
    Run("crash_loop", "chaos/crash_loop.py", ("--rounds", "25"), 200, "25 rounds, not 100 (about 5 s a round)"),
    Run("slack_faults", "chaos/slack_faults.py", (), 360),
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


# -- running -----------------------------------------------------------------------------------


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


# -- reading what the scripts print ------------------------------------------------------------

NUM = r"([\d.]+)"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def read_ack_latency(key: str, text: str, found: Findings) -> None:
    rate = key.split("@")[1]
    line = r"^{}\s+n=(\d+)\s+errors=(\d+)\s+p50\s+" + NUM + r" ms\s+p99\s+" + NUM + " ms"
    ours = re.search(line.format("ours"), text, re.M)
    bare = re.search(line.format("bare"), text, re.M)
    if not (ours and bare):
        return
    n, errors, p50, p99 = int(ours[1]), int(ours[2]), float(ours[3]), float(ours[4])
    unsent_match = re.search(r"^ours .*'unsent': (\d+)", text, re.M)
    unsent = int(unsent_match[1]) if unsent_match else 0
    bare_p50, bare_p99 = float(bare[3]), float(bare[4])
    found.values |= {(key, "p50"): p50, (key, "p99"): p99, (key, "bare_p50"): bare_p50, (key, "bare_p99"): bare_p99}
    found.figures += [
        Figure(
            f"Ack p50 at {rate} clicks/s, ours vs bare Bolt",
            f"{p50:.2f} ms vs {bare_p50:.2f} ms (x{p50 / bare_p50:.2f})",
            "ours ≤ bare",
            verdict(p50 <= bare_p50),
            key,
        ),
        Figure(
            f"Ack p99 at {rate} clicks/s, ours (bare Bolt)",
            f"{p99:.2f} ms ({bare_p99:.2f} ms)",
            "≤ 50 ms",
            verdict(p99 <= 50),
            key,
        ),
        Figure(
            f"Clicks to ours not answered 200 at {rate}/s (those never sent in time count too)",
            f"{errors} of {n + unsent}",
            "0",
            verdict(errors == 0),
            key,
        ),
    ]
    check = re.search(
        r"^verify ours: (\d+) clicked actions, (\d+) approved on exactly one .*: (PASS|FAIL)$", text, re.M
    )
    if check:
        clicked, once = int(check[1]), int(check[2])
        found.checks.append(
            Check(
                f"Approve clicks at {rate}/s: each action approved on exactly one decision",
                f"{once} of {clicked} exactly once",
                clicked - once,
                0,
                check[3] == "PASS",
                key,
            )
        )


def read_decisions(key: str, text: str, found: Findings) -> None:
    rates: dict[tuple[str, int], float] = {}
    statements: dict[int, str] = {}
    pattern = r"^(UPDATE|session|decision)\s+threads=(\d+)\s+(\d+)/s.*?(?:; ([\d.]+) SQL statements each)?\)$"
    for kind, threads, rate, sql in re.findall(pattern, text, re.M):
        rates[kind, int(threads)] = float(rate)
        found.values[key, f"{kind}@{threads}"] = float(rate)
        if sql:
            statements[int(threads)] = sql
    for threads in sorted({threads for _, threads in rates}):
        decided, updated = rates.get(("decision", threads)), rates.get(("UPDATE", threads))
        if decided is None or updated is None:
            continue
        ratio = decided / updated
        session = rates.get(("session", threads))
        found.figures.append(
            Figure(
                f"Durable decisions/s ÷ raw UPDATE commits/s, {threads} thread{'s' if threads > 1 else ''}",
                f"{decided:.0f} ÷ {updated:.0f} = {ratio:.2f}"
                + (f" (the UPDATE in a session: {session:.0f}/s)" if session else "")
                + (f"; {statements[threads]} SQL statements per decision" if threads in statements else ""),
                "≥ 0.5",
                verdict(ratio >= 0.5),
                key,
            )
        )
    settings = re.search(r"^postgres \((.*?)\):", text, re.M)
    if settings:
        found.notes.append(f"PostgreSQL settings during `{key}`: {settings[1]}.")
    check = re.search(r"^verify: (\d+) decisions: .*lost (\d+), duplicate (\d+);.*: (PASS|FAIL)$", text, re.M)
    if check:
        found.checks.append(
            Check(
                "Decisions: approved once, one decision row, one outbox row, audit events, ledger verifies",
                f"{check[1]} decisions",
                int(check[2]),
                int(check[3]),
                check[4] == "PASS",
                key,
            )
        )


def read_audit_appends(key: str, text: str, found: Findings) -> None:
    pattern = r"^(sqlite|postgres)\s+writers=(\d+)\s+(\d+) appends/s\s+p50\s+" + NUM + r" ms\s+p99\s+" + NUM
    for backend, writers, rate, p50, p99 in re.findall(pattern, text, re.M):
        found.values[key, f"{backend}@{writers}"] = float(rate)
        found.figures.append(
            Figure(
                f"Audit appends/s, {backend}, {writers} writer{'s' if int(writers) > 1 else ''} (p50 / p99)",
                f"{float(rate):.0f}/s ({p50} / {p99} ms)",
                "—",
                "—",
                key,
            )
        )
    for backend, report in re.findall(r"^verify (sqlite|postgres)\s+(.*?)\s{2,}", text, re.M):
        found.checks.append(
            Check(
                f"Audit ledger after concurrent appends ({backend}) verifies",
                report.split(", head")[0],
                0,
                0,
                report.startswith("ok"),
                key,
            )
        )


def read_timers(key: str, text: str, found: Findings) -> None:
    for size, wall, server in re.findall(r"^sweep\s+([\d,]+) pending:\s+(\d+) µs/query, server " + NUM, text, re.M):
        found.values[key, f"sweep@{size.replace(',', '')}"] = float(wall)
        found.figures.append(
            Figure(f"Sweep claim query, {size} pending", f"{wall} µs ({server} ms server)", "—", "—", key)
        )
    ratio = re.search(
        r"^sweep ratio ([\d,]+)/([\d,]+): x" + NUM + r" per query, x" + NUM + r" server.*index: (\w+)", text, re.M
    )
    if ratio:
        per_query = float(ratio[3])
        found.figures.append(
            Figure(
                f"Sweep cost {ratio[1]} ÷ {ratio[2]} pending (server time); partial index used",
                f"x{per_query:.2f} (x{ratio[4]}); {ratio[5]}",
                "near 1 (PASS if ≤ 2) and index used",
                verdict(per_query <= 2 and ratio[5] == "yes"),
                key,
            )
        )
    setup = re.search(r"^lateness: (\d+) steps due over (\d+) s at (\d+)/s, ([\d,]+) other pending", text, re.M)
    late = re.search(r"^lateness \(commit - due\): p50 " + NUM + r" s, p99 " + NUM + r" s, max " + NUM, text, re.M)
    if setup and late:
        p99 = float(late[2])
        found.values[key, "late_p99"] = p99
        found.values[key, "late_p50"] = float(late[1])
        found.figures.append(
            Figure(
                f"Timer lateness p99 (p50), {setup[3]} steps/s due, {setup[4]} other pending",
                f"{p99:.3f} s ({float(late[1]):.3f} s)",
                "≤ 1.5 s",
                verdict(p99 <= 1.5),
                key,
            )
        )
    once = re.search(r"^exactly once: (\d+)/(\d+) actions .*\((\d+) none, (\d+) several; (\d+) other", text, re.M)
    if once:
        due, none, several, other = int(once[2]), int(once[3]), int(once[4]), int(once[5])
        found.checks.append(
            Check(
                f"Escalation steps under a 1 s tick ({setup[3] if setup else '?'}/s): each fires exactly once",
                f"{once[1]} of {due} once",
                none,
                several + other,
                not (none or several or other),
                key,
            )
        )


def read_agent_overhead(key: str, text: str, found: Findings) -> None:
    pattern = (
        r"^summary (\w+): agent step p50 = runner " + NUM + r" \+ executor " + NUM + " = " + NUM + r" ms.*turn.*?: "
    )
    for backend, runner, executor, step, turn in re.findall(pattern + NUM, text, re.M):
        found.figures.append(
            Figure(
                f"Agent runtime overhead per step p50, {backend} (runner + executor; whole tool turn)",
                f"{step} ms ({runner} + {executor}; {turn} ms)",
                "≤ 10 ms",
                verdict(float(step) <= 10),
                key,
            )
        )


def read_rss(key: str, text: str, found: Findings) -> None:
    summary = re.search(r"^summary: idle RSS " + NUM + r" MB.*peak RSS under load " + NUM + " MB", text, re.M)
    load = re.search(r"^load\s+(\d+) commands over ([\d.]+) s", text, re.M)
    if not (summary and load):
        return
    idle, peak, commands = float(summary[1]), float(summary[2]), load[1]
    found.values |= {(key, "idle"): idle, (key, "peak"): peak}
    found.figures += [
        Figure("`serve` RSS idle", f"{idle:.1f} MB", "≤ 150 MB", verdict(idle <= 150), key),
        Figure(
            f"`serve` peak RSS, {commands} commands + approvals in {load[2]} s",
            f"{peak:.1f} MB",
            "≤ 250 MB",
            verdict(peak <= 250),
            key,
        ),
    ]
    check = re.search(r"^verify: .*executions lost (\d+), duplicate (\d+): (PASS|FAIL)$", text, re.M)
    if check:
        found.checks.append(
            Check(
                f"`serve` under load ({commands} commands): every task succeeded, each action ran once",
                f"lost {check[1]}, duplicate {check[2]}",
                int(check[1]),
                int(check[2]),
                check[3] == "PASS",
                key,
            )
        )


READERS: dict[str, Callable[[str, str, Findings], None]] = {
    "bench/ack_latency.py": read_ack_latency,
    "bench/decisions_vs_updates.py": read_decisions,
    "bench/audit_appends.py": read_audit_appends,
    "bench/timers.py": read_timers,
    "bench/agent_overhead.py": read_agent_overhead,
    "bench/rss.py": read_rss,
}
# Names of bad effects in a summary line: `lost=0 duplicate=0`, `lost 0, duplicates 0` or `0 lost`.
EFFECT = r"(\w*(?:lost|duplicat|twice|stuck|out_of_order|5xx|state[ _]change)\w*)"


def effects(summary: str) -> dict[str, int]:
    """Counts of bad effects named in a chaos summary line."""
    pairs = re.findall(EFFECT + r"\s*[:=]?\s*(\d+)\b", summary, re.I)
    if pairs:
        return {name.lower(): int(count) for name, count in pairs}
    return {name.lower(): int(count) for count, name in re.findall(r"\b(\d+)\s+" + EFFECT, summary, re.I)}


# -- the docs ----------------------------------------------------------------------------------


def machine() -> list[tuple[str, str]]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "?",
    )
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0"
    )
    commit = quiet(["git", "rev-parse", "--short", "HEAD"])
    dirty = " (with uncommitted changes)" if quiet(["git", "status", "--porcelain"]) else ""
    return [
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU", cpu),
        ("Memory", f"{int(memory) / 1024 / 1024:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("PostgreSQL", postgres_version()),
        ("Commit", (commit or "?") + dirty),
    ]


def quiet(command: list[str]) -> str:
    try:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def postgres_version() -> str:
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine

    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            version = str(conn.exec_driver_sql("SHOW server_version").scalar())
        engine.dispose()
        return version
    except Exception as exc:
        return f"unreachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def code(text: str) -> str:
    return f"`{text}`"


def preamble(title: str, began: datetime, seconds: float, load: tuple[str, str]) -> list[str]:
    return [
        f"# {title}",
        "",
        "Generated by `make proof` (`.venv/bin/python bench/proof.py`); do not edit by hand: rerun it.",
        f"Run on {began:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes in all; load average before/after: "
        f"{load[0]} / {load[1]} (other work on the machine skews the numbers; the ratios are measured side by "
        "side in one run so that it cancels out).",
        "",
        *table(("Machine", ""), machine()),
        "",
    ]


def problems(outcomes: list[Outcome], reliability: bool) -> list[str]:
    lines = []
    for outcome in outcomes:
        if outcome.run.reliability != reliability or outcome.status == "PASS":
            continue
        if outcome.status == "MISSING":
            lines += [f"- **{outcome.run.key}**: MISSING — {outcome.problem}; not run.", ""]
            continue
        lines += [f"- **{outcome.run.key}**: FAIL — {outcome.problem}; `{outcome.run.command()}`; last lines:", ""]
        lines += ["  ```", *(f"  {line}" for line in outcome.tail().splitlines()), "  ```", ""]
    return lines


def sizes(reliability: bool) -> list[str]:
    chosen = [run for run in RUNS if run.sizes and run.reliability == reliability]
    return [f"- `{run.key}`: {run.sizes} (`{run.command()}`)" for run in chosen] or ["- (none)"]


def commands_of(outcomes: list[Outcome]) -> dict[str, str]:
    return {outcome.run.key: code(outcome.run.command()) for outcome in outcomes}


# (figure, load at 1x, the higher load, how many times more, unit, (run, metric) at each)
GROWTH = (
    ("Ack p50, ours", "30 clicks/s", "300 clicks/s", 10, "ms", ("ack_latency@30", "p50"), ("ack_latency@300", "p50")),
    ("Ack p99, ours", "30 clicks/s", "300 clicks/s", 10, "ms", ("ack_latency@30", "p99"), ("ack_latency@300", "p99")),
    ("Ack p50, ours", "100 clicks/s", "300 clicks/s", 3, "ms", ("ack_latency@100", "p50"), ("ack_latency@300", "p50")),
    ("Ack p99, ours", "100 clicks/s", "300 clicks/s", 3, "ms", ("ack_latency@100", "p99"), ("ack_latency@300", "p99")),
    (
        "Ack p99, bare Bolt",
        "30 clicks/s",
        "300 clicks/s",
        10,
        "ms",
        ("ack_latency@30", "bare_p99"),
        ("ack_latency@300", "bare_p99"),
    ),
    (
        "Durable decisions/s",
        "1 thread",
        "16 threads",
        16,
        "/s",
        ("decisions_vs_updates", "decision@1"),
        ("decisions_vs_updates", "decision@16"),
    ),
    (
        "Raw UPDATE commits/s",
        "1 thread",
        "16 threads",
        16,
        "/s",
        ("decisions_vs_updates", "UPDATE@1"),
        ("decisions_vs_updates", "UPDATE@16"),
    ),
    (
        "Audit appends/s, SQLite",
        "1 writer",
        "16 writers",
        16,
        "/s",
        ("audit_appends", "sqlite@1"),
        ("audit_appends", "sqlite@16"),
    ),
    (
        "Audit appends/s, PostgreSQL",
        "1 writer",
        "16 writers",
        16,
        "/s",
        ("audit_appends", "postgres@1"),
        ("audit_appends", "postgres@16"),
    ),
    (
        "Sweep claim query",
        "1k pending",
        "100k pending",
        100,
        "µs",
        ("timers", "sweep@1000"),
        ("timers", "sweep@100000"),
    ),
    (
        "Sweep claim query",
        "1k pending",
        "1M pending",
        1000,
        "µs",
        ("timers", "sweep@1000"),
        ("timers", "sweep@1000000"),
    ),
    (
        "Timer lateness p99",
        "5 steps/s due",
        "50 steps/s due",
        10,
        "s",
        ("timers@5", "late_p99"),
        ("timers", "late_p99"),
    ),
    ("`serve` peak RSS", "10 commands in 20 s", "100 commands in 20 s", 10, "MB", ("rss@10", "peak"), ("rss", "peak")),
)


def growth(values: dict[tuple[str, str], float]) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for name, low_load, high_load, factor, unit, low, high in GROWTH:
        if low in values and high in values:
            a, b = values[low], values[high]
            unit = unit if unit.startswith("/") else " " + unit
            rows.append(
                (
                    name,
                    f"{low_load} → {high_load}",
                    f"x{factor}",
                    f"{a:g}{unit}",
                    f"{b:g}{unit}",
                    f"x{b / a:.2f}" if a else "—",
                )
            )
    return rows


def performance_doc(outcomes: list[Outcome], found: Findings, header: list[str]) -> str:
    commands = commands_of(outcomes)
    lines = [*header, "## Figures", ""]
    for outcome in outcomes:
        if outcome.run.reliability:
            continue
        mine = [figure for figure in found.figures if figure.key == outcome.run.key]
        lines += [f"### {outcome.run.key} — {outcome.status} in {outcome.seconds:.0f} s", ""]
        if mine:
            rows = [(f.name, f.number, f.goal, f.result, commands[f.key]) for f in mine]
            lines += [*table(("Figure", "Number", "Goal", "Result", "Command"), rows), ""]
        else:
            lines += [
                f"No figures: {outcome.problem or 'nothing recognisable printed'} ({commands[outcome.run.key]}).",
                "",
            ]
    lines += [
        "## Growth from 1x to 10x load",
        "",
        "The same figure at a low and a high load, each from the command in the tables above.",
        "",
        *table(("Figure", "Load", "Load factor", "At 1x", "At the higher load", "Growth"), growth(found.values)),
        "",
        "## Sizes",
        "",
        "Each script runs at its defaults unless said here (to fit the proof in 20 minutes on 2 cores):",
        "",
        *sizes(reliability=False),
        "",
        *(f"{note}" for note in found.notes),
        "",
    ]
    failed = problems(outcomes, reliability=False)
    if failed:
        lines += ["## Scripts that did not finish", "", *failed]
    return "\n".join(lines).rstrip() + "\n"


def reliability_doc(outcomes: list[Outcome], found: Findings, header: list[str]) -> str:
    commands = commands_of(outcomes)
    rows = []
    for outcome in outcomes:
        if not outcome.run.reliability:
            continue
        summary = outcome.summary_line() if outcome.status != "MISSING" else "not run: script missing"
        counts = effects(summary)
        bad = ", ".join(f"{name} {count}" for name, count in counts.items()) or "—"
        if outcome.reports_effect():
            result = "FAIL"
        elif outcome.status == "FAIL":
            result = "FAIL (did not finish)"
        else:
            result = outcome.status
        rows.append(
            (
                outcome.run.key,
                summary,
                bad,
                "0 lost / duplicate",
                result,
                f"{outcome.seconds:.0f} s" if outcome.status != "MISSING" else "—",
                commands[outcome.run.key],
            )
        )
    check_rows = [
        (c.name, c.found, str(c.lost), str(c.duplicate), "PASS" if c.passed else "FAIL", commands[c.key])
        for c in found.checks
    ]
    lines = [
        *header,
        "## Chaos scenarios",
        "",
        "Goal: 0 in every lost/duplicate column. A scenario passes when its script exits 0 and its summary line "
        "names no lost or duplicated effect. FAIL (did not finish): it crashed or ran out of its time limit "
        "before giving a verdict, which proves nothing either way.",
        "",
        *table(("Scenario", "Summary line", "Lost / duplicate found", "Goal", "Result", "Time", "Command"), rows),
        "",
        "## Exactly-once checks inside the benchmarks",
        "",
        "Every benchmark that changes state checks afterwards that each effect happened exactly once.",
        "",
        *table(("Check", "Found", "Lost", "Duplicate", "Result", "Command"), check_rows),
        "",
    ]
    lines += [
        "## Sizes",
        "",
        "Each scenario runs at its defaults unless said here (to fit the proof in 20 minutes on 2 cores):",
        "",
        *sizes(reliability=True),
        "",
    ]
    failed = problems(outcomes, reliability=True)
    if failed:
        lines += ["## Scenarios that did not run or failed", "", *failed]
    return "\n".join(lines).rstrip() + "\n"


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", help="comma-separated run keys (default: all); the docs then show only these")
    parser.add_argument("--strict", action="store_true", help="exit 2 if a script is missing or failed")
    parser.add_argument("--budget", type=float, default=1200, help="seconds for the whole proof (default 1200)")
    args = parser.parse_args()
    chosen = [run for run in RUNS if not args.only or run.key in args.only.split(",")]
    began, start, load_before = datetime.now(UTC), time.perf_counter(), load_average()
    outcomes = []
    for run in chosen:
        left = args.budget - (time.perf_counter() - start)
        outcome = execute(run, max(10.0, min(run.limit_s, left)))
        if outcome.status == "FAIL" and left < run.limit_s and "timed out" in outcome.problem:
            outcome.problem += " (the proof's time budget ran out)"
        outcomes.append(outcome)
    found = Findings()
    for outcome in outcomes:
        reader = READERS.get(outcome.run.script)
        if reader is not None and outcome.stdout:
            reader(outcome.run.key, outcome.stdout, found)
    seconds = time.perf_counter() - start
    load = (load_before, load_average())
    DOCS.mkdir(exist_ok=True)
    header = preamble("Performance", began, seconds, load)
    (DOCS / "performance.md").write_text(performance_doc(outcomes, found, header))
    header = preamble("Reliability", began, seconds, load)
    (DOCS / "reliability.md").write_text(reliability_doc(outcomes, found, header))

    chaos_failed = [o.run.key for o in outcomes if o.run.reliability and o.reports_effect()]
    checks_failed = [c.name for c in found.checks if not c.passed or c.lost or c.duplicate]
    other = [f"{o.run.key} {o.status}" for o in outcomes if o.status != "PASS" and o.run.key not in chaos_failed]
    print(f"proof: {len(outcomes)} runs in {seconds / 60:.1f} min; wrote docs/performance.md and docs/reliability.md")
    print(
        f"summary: scenarios reporting lost/duplicate effects or FAIL {chaos_failed or 'none'}; "
        f"exactly-once checks failed {checks_failed or 'none'}; missing or not finished {other or 'none'}"
    )
    if chaos_failed or checks_failed:
        sys.exit(1)
    if args.strict and other:
        sys.exit(2)


if __name__ == "__main__":
    main()
