"""Reading what the benchmark scripts print: one reader per script (`READERS`), each
turning the script's summary lines into figures with goals and exactly-once checks."""

from __future__ import annotations

import re
from collections.abc import Callable

from bench.proof_runs import Check, Figure, Findings

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
    read_timer_burst(key, text, found)


def read_timer_burst(key: str, text: str, found: Findings) -> None:
    """Part 3 of bench/timers.py: a burst of steps due at once, two sweepers."""
    setup = re.search(r"^burst: ([\d,]+) steps due at once .*, (\d+) sweepers", text, re.M)
    drained = re.search(r"^burst drained: last fired after " + NUM + r" s \(([\d,]+) steps/s", text, re.M)
    partial = re.search(
        r"^burst NOT drained: ([\d,]+) of [\d,]+ fired in " + NUM + r" s \(([\d,]+) steps/s, so about ([\d,]+) s",
        text,
        re.M,
    )
    if not setup:
        return
    name = f"{setup[1]} escalation steps due at once, {setup[2]} sweepers: time until the last fired"
    if drained:
        seconds = float(drained[1])
        found.values[key, "burst_s"] = seconds
        number = f"{seconds:.1f} s ({drained[2]} steps/s)"
        found.figures.append(Figure(name, number, "≤ 2 min", verdict(seconds <= 120), key))
    elif partial:
        number = (
            f"not drained: {partial[1]} fired in {partial[2]} s ({partial[3]} steps/s, about {partial[4]} s for all)"
        )
        found.figures.append(Figure(name, number, "≤ 2 min", "MISS", key))
    once = re.search(
        r"^burst exactly once: (\d+)/(\d+) actions .*\(lost (\d+), duplicated (\d+); (\d+) not fired; (\d+) other",
        text,
        re.M,
    )
    if once:
        lost, duplicated, unfired, other = (int(once[n]) for n in (3, 4, 5, 6))
        found.checks.append(
            Check(
                f"Escalation steps due at once ({setup[1]}), {setup[2]} sweepers: each fires exactly once",
                f"{once[1]} of {once[2]} once ({unfired} not fired)",
                lost + unfired,
                duplicated + other,
                not (lost or unfired or duplicated or other),
                key,
            )
        )


BACKEND_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}


def read_agent_overhead(key: str, text: str, found: Findings) -> None:
    turn = r"^summary (\w+): whole tool turn p50 = " + NUM + r" ms \((.*) at their p50s; (.*) per turn\)"
    for backend, ms, units, issued in re.findall(turn, text, re.M):
        goal = backend == "postgres"  # the goal is PostgreSQL's (issue #16); SQLite's is shown beside it
        found.figures.append(
            Figure(
                f"Agent runtime overhead per whole tool turn, {BACKEND_NAMES.get(backend, backend)} (model at 0 ms)",
                f"{ms} ms ({units}; {issued})",
                "≤ 10 ms" if goal else "—",
                verdict(float(ms) <= 10) if goal else "—",
                key,
            )
        )
    step = r"^summary (\w+): agent step p50 = runner " + NUM + r" \+ executor " + NUM + " = " + NUM + " ms"
    for backend, runner, executor, total in re.findall(step, text, re.M):
        found.figures.append(
            Figure(
                f"Agent runtime overhead per step p50, {BACKEND_NAMES.get(backend, backend)} (runner + executor)",
                f"{total} ms ({runner} + {executor})",
                "—",
                "—",
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


def read_idle_cpu(key: str, text: str, found: Findings) -> None:
    pattern = r"^summary (\w+): idle serve, (\d+) task types: .* = " + NUM + " cores"
    for backend, types, cores in re.findall(pattern, text, re.M):
        found.values[(key, f"{backend} {types}")] = float(cores)
        found.figures.append(
            Figure(
                f"idle `serve` CPU, {types} task types, {backend}",
                f"{float(cores):.3f} core",
                "≤ 0.02 core",
                verdict(float(cores) <= 0.02),
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
    "bench/idle_cpu.py": read_idle_cpu,
}
# Names of bad effects in a summary line: `lost=0 duplicate=0`, `lost 0, duplicates 0` or `0 lost`.
