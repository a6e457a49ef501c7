"""Reading what the benchmark scripts print: one reader per script (`READERS`), each
turning the script's summary lines into figures with goals and exactly-once checks."""

from __future__ import annotations

import re
from collections.abc import Callable

from bench.proof_runs import Check, Figure, Findings

NUM = r"([\d.]+)"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


ACK_LINE = r"^{}\s+n=(\d+)\s+in_time=(\d+)\s+over_3s=(\d+)\s+errors=(\d+)\s+p50\s+(>?[\d.]+) ms\s+p99\s+(>?[\d.]+) ms"


def _ms(text: str) -> float:
    """A percentile as ack_latency prints it: `>3000` (not answered within 3 s) is infinite."""
    return float("inf") if text.startswith(">") else float(text)


def _shown(value: float) -> str:
    return "> 3 s" if value == float("inf") else f"{value:.2f} ms"


def read_ack_latency(key: str, text: str, found: Findings) -> None:
    rate = int(float(key.split("@")[1]))
    apps = {}
    for name in ("ours", "bare-pbr", "bare"):
        match = re.search(ACK_LINE.format(re.escape(name)), text, re.M)
        if match:
            n, in_time, over, errors = (int(match[i]) for i in range(1, 5))
            apps[name] = (n, in_time, over, errors, _ms(match[5]), _ms(match[6]))
    if "ours" not in apps:
        return
    n, in_time, over, errors, p50, p99 = apps["ours"]
    backend = re.search(r"^(postgres|sqlite): ours is", text, re.M)
    where = "PostgreSQL" if backend and backend[1] == "postgres" else "SQLite"
    for name, (*_, app_p50, app_p99) in apps.items():
        if app_p50 != float("inf"):
            found.values[key, "p50" if name == "ours" else f"{name}_p50"] = app_p50
        if app_p99 != float("inf"):
            found.values[key, "p99" if name == "ours" else f"{name}_p99"] = app_p99
    floors = "; ".join(
        f"{label} {_shown(apps[name][4])} / {_shown(apps[name][5])}"
        for name, label in (("bare-pbr", "bare Bolt answering when its listener returns"), ("bare", "bare Bolt"))
        if name in apps
    )
    if rate == 1000:
        found.figures.append(
            Figure(
                "Acks over 3 s at 1,000 clicks/s for 5 s (overload path), `serve` defaults on " + where,
                f"{over} of {n} (p50 {_shown(p50)}, p99 {_shown(p99)})",
                "0",
                verdict(over == 0),
                key,
            )
        )
    elif rate == 300:
        found.figures.append(
            Figure(
                f"Ack p99 at 300 signed clicks/s for 10 s, `serve` defaults on {where}",
                f"{_shown(p99)}; {over} of {n} over 3 s",
                "≤ 50 ms, none over 3 s",
                verdict(p99 <= 50 and over == 0),
                key,
            )
        )
    else:
        found.figures.append(
            Figure(f"Ack p99 at {rate} clicks/s, ours on {where}", _shown(p99), "≤ 50 ms", verdict(p99 <= 50), key)
        )
    if floors:
        found.figures.append(
            Figure(
                f"Ack p50 / p99 at {rate} clicks/s: ours, and the floors (same server settings, no-op listener)",
                f"ours {_shown(p50)} / {_shown(p99)}; {floors}",
                "—",
                "—",
                key,
            )
        )
    found.figures.append(
        Figure(
            f"Clicks to ours not answered 200 within 3 s at {rate}/s (never sent in time counts too)",
            f"{n - in_time} of {n}",
            "0",
            verdict(n == in_time and not errors),
            key,
        )
    )
    check = re.search(
        r"^verify ours: (\d+) clicks answered in time: (\d+) decided once, (\d+) shed and told once; lost (\d+), "
        r"duplicate decisions (\d+) .*duplicate executions (\d+), told twice (\d+), decided yet told busy (\d+), "
        r"refusals (\d+); .*: (PASS|FAIL)$",
        text,
        re.M,
    )
    if check:
        answered, decided, shed = int(check[1]), int(check[2]), int(check[3])
        duplicate = sum(int(check[i]) for i in (5, 6, 7, 8))
        found.checks.append(
            Check(
                f"Approve clicks at {rate}/s: each answered in time decided once, or shed and its clicker told once",
                f"{decided} decided, {shed} shed, of {answered}",
                int(check[4]),
                duplicate,
                check[10] == "PASS",
                key,
            )
        )


def read_decisions(key: str, text: str, found: Findings) -> None:
    rates: dict[tuple[str, int], float] = {}
    costs: dict[int, str] = {}
    pattern = (
        r"^(UPDATE|session|decision)\s+threads=(\d+)\s+(\d+)/s.*?"
        r"(?:; ([\d.]+) SQL statements and ([\d.]+) ms of CPU each)?\)$"
    )
    for kind, threads, rate, sql, cpu in re.findall(pattern, text, re.M):
        rates[kind, int(threads)] = float(rate)
        found.values[key, f"{kind}@{threads}"] = float(rate)
        if sql:
            costs[int(threads)] = f"{sql} SQL statements and {cpu} ms of client CPU per decision"
    for threads in sorted({threads for _, threads in rates}):
        decided, updated = rates.get(("decision", threads)), rates.get(("UPDATE", threads))
        if decided is None or updated is None:
            continue
        ratio = decided / updated
        session = rates.get(("session", threads))
        found.figures.append(
            Figure(
                f"Durable decisions/s ÷ raw UPDATE commits/s, PostgreSQL, {threads} thread{'s' if threads > 1 else ''}",
                f"{decided:.0f} ÷ {updated:.0f} = {ratio:.2f}"
                + (f" (the UPDATE in a session: {session:.0f}/s)" if session else "")
                + (f"; {costs[threads]}" if threads in costs else ""),
                "≥ 0.5",
                verdict(ratio >= 0.5),
                key,
            )
        )
    chainer = re.search(
        r"^chainer: (\d+) batches, ([\d.]+) events and ([\d.]+) ms with the chain lock each", text, re.M
    )
    if chainer:
        found.notes.append(
            f"`{key}`: the chainer linked {chainer[2]} events per batch, holding the chain lock {chainer[3]} ms "
            f"per batch ({chainer[1]} batches)."
        )
    for threads, won, refused in re.findall(r"^same action threads=(\d+)\s+\d+ actions, .*?: (\d+) approved, "
                                            r"(\d+) refused", text, re.M):  # fmt: skip
        found.notes.append(f"`{key}`: {threads} threads clicking the same action at once: {won} approved, "
                           f"{refused} refused.")  # fmt: skip
    settings = re.search(r"^postgres \((.*?)\):", text, re.M)
    if settings:
        found.notes.append(f"PostgreSQL settings during `{key}`: {settings[1]}.")
    check = re.search(r"^verify: (\d+) decisions: .*lost (\d+), duplicate (\d+);.*: (PASS|FAIL)$", text, re.M)
    if check:
        found.checks.append(
            Check(
                "Decisions (same-action clicks included): approved once, one decision row, one outbox row, "
                "audit events, every lost click's refusal audited, ledger verifies",
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
                f"Audit events chained/s, {backend}, {writers} writer{'s' if int(writers) > 1 else ''} "
                "(commit p50 / p99)",
                f"{float(rate):.0f}/s ({p50} / {p99} ms)",
                "—",
                "—",
                key,
            )
        )
    ratios = r"postgres (\d+)w (\d+) chained/s ÷ (\d+) UPDATEs/s = " + NUM + r" (PASS|MISS)"
    for writers, chained, updates, ratio, _ in re.findall(ratios, text):
        goal = int(writers) == 8
        found.figures.append(
            Figure(
                f"Audit events chained/s ÷ raw UPDATE commits/s, PostgreSQL, {writers} writer"
                + ("s" if int(writers) > 1 else ""),
                f"{chained} ÷ {updates} = {float(ratio):.2f}",
                "≥ 0.5" if goal else "—",
                verdict(float(ratio) >= 0.5) if goal else "—",
                key,
            )
        )
    verified = r"^verify (sqlite|postgres)\s+(.*?)\s{2,}.*?(\d+) written, (\d+) found: lost (\d+), duplicate (\d+), " \
        r"unchained (\d+)"  # fmt: skip
    for backend, report, written, _, lost, duplicate, unchained in re.findall(verified, text, re.M):
        found.checks.append(
            Check(
                f"Audit ledger after concurrent appends ({backend}): verifies, each event written found once",
                f"{written} events; {report.split(', head')[0]}",
                int(lost) + int(unchained),
                int(duplicate),
                report.startswith("ok") and not int(lost) + int(unchained) + int(duplicate),
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
            f"`serve` peak RSS (VmHWM, its processes summed), {commands} commands + approvals in {load[2]} s",
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


def read_serve_workers(key: str, text: str, found: Findings) -> None:
    pattern = (
        r"^summary workers=(\d+): clients (\d+), decisions (\d+)/s, raw UPDATE commits (\d+)/s, "
        r"bare Bolt (\d+) requests/s, ratio " + NUM + r".*?ack p50 " + NUM + r" ms, p99 " + NUM + r" ms, over 3 s (\d+)"
        r".*?serve CPU " + NUM + r" cores busy, " + NUM + " ms per decision"
    )
    for workers, clients, decided, raw, bare, ratio, p50, p99, late, cores, cpu in re.findall(pattern, text, re.M):
        found.figures.append(
            Figure(
                f"Decisions/s through a whole `serve --workers {workers}` ÷ the lower of raw UPDATE commits/s and a "
                f"bare Bolt app's requests/s, PostgreSQL, {clients} clients",
                f"{decided} ÷ min({raw}, {bare}) = {float(ratio):.3f}; ack p50 {p50} / p99 {p99} ms, {late} over 3 s; "
                f"serve {cores} cores busy, {cpu} ms of CPU per decision (with its execution and card update)",
                "≥ 0.5",
                verdict(float(ratio) >= 0.5),
                key,
            )
        )
    for missing, duplicate, state in re.findall(
        r"missing (\d+), duplicate (\d+), still pending \d+: (PASS|FAIL)", text
    ):
        found.checks.append(
            Check(
                "Clicks through a whole serve: each action decided once, none left pending",
                "every clicked action",
                int(missing),
                int(duplicate),
                state == "PASS",
                key,
            )
        )


def read_long_polls(key: str, text: str, found: Findings) -> None:
    summary = re.search(
        r"^summary: (\d+) long-polls held by one serve, delivery p99 " + NUM + r" ms after the ack .*?: (PASS|MISS); "
        r"peak RSS " + NUM + r" MB",
        text,
        re.M,
    )
    delivery = re.search(r"^delivery after the ack: p50 (-?[\d.]+) ms", text, re.M)
    if not summary:
        return
    polls, p99, result, peak = summary[1], float(summary[2]), summary[3], float(summary[4])
    found.values |= {(key, "p99"): p99, (key, "peak"): peak}
    p50 = f"p50 {delivery[1]} ms, " if delivery else ""
    found.figures.append(
        Figure(
            f"Decision delivery to {polls} long-polls held at once by one `serve` (PostgreSQL), after the click's ack",
            f"{p50}p99 {p99:.1f} ms; peak RSS {peak:.1f} MB (VmHWM)",
            "p99 ≤ 100 ms",
            result,
            key,
        )
    )
    check = re.search(
        r"^verify: approved once \d+, missing (\d+), duplicate (\d+), still pending \d+, "
        r"answers wrong or absent (\d+): (PASS|FAIL)$",
        text,
        re.M,
    )
    if check:
        found.checks.append(
            Check(
                f"{polls} long-polls: each action approved once, each poll answered `approved` with its params",
                f"wrong or absent answers {check[3]}",
                int(check[1]) + int(check[3]),
                int(check[2]),
                check[4] == "PASS",
                key,
            )
        )


READERS: dict[str, Callable[[str, str, Findings], None]] = {
    "bench/long_polls.py": read_long_polls,
    "bench/serve_workers.py": read_serve_workers,
    "bench/ack_latency.py": read_ack_latency,
    "bench/decisions_vs_updates.py": read_decisions,
    "bench/audit_appends.py": read_audit_appends,
    "bench/timers.py": read_timers,
    "bench/agent_overhead.py": read_agent_overhead,
    "bench/rss.py": read_rss,
    "bench/idle_cpu.py": read_idle_cpu,
}
# Names of bad effects in a summary line: `lost=0 duplicate=0`, `lost 0, duplicates 0` or `0 lost`.
