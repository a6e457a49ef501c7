"""`make proof`: run every benchmark and chaos script once, and write docs/performance.md and
docs/reliability.md from what they print.

Each script runs alone (one at a time: the machine has few cores), in its own process group,
with a time limit; its output is echoed and kept. A script that is missing is recorded as
MISSING, one that fails or runs out of time as FAIL with its last lines, and the run goes on.
Sizes are chosen so that the whole proof fits in about 40 minutes on 2 cores (see RUNS); every figure
in the docs carries the exact command that produced it, so any of them can be rerun alone.

    .venv/bin/python bench/proof.py [--only NAME[,NAME]] [--budget 3000]

Exit status: 1 if a chaos scenario reported a lost or duplicated effect (or its own FAIL) or a
benchmark's exactly-once check failed; else 2 if a script is missing, crashed (a non-zero exit)
or ran out of time, since what it did not print proves nothing; else 0. The docs are written
anyway, and show which. A goal missed (MISS) is a finding, not a failure of the proof.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository's packages

from bench.proof_docs import performance_doc, preamble, reliability_doc
from bench.proof_readers import READERS
from bench.proof_runs import DOCS, RUNS, Findings, execute


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", help="comma-separated run keys (default: all); the docs then show only these")
    parser.add_argument("--budget", type=float, default=3000, help="seconds for the whole proof (default 3000)")
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
    if other:
        sys.exit(2)


if __name__ == "__main__":
    main()
