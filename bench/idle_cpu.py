"""CPU of a real `countersign serve` doing nothing, with 1 and with 128 task types.

For each backend and each config the script starts `countersign serve` as its own process
(scripted model, Slack emulator in this process), waits for `/healthz` and `--settle` seconds
more, then reads the process's CPU time (utime + stime from /proc/<pid>/stat) at the start and
the end of `--seconds` idle seconds. `cores = cpu seconds / wall seconds`.

Goal: an idle `serve` costs ≤ 0.02 of a core, whatever the number of task types.

    .venv/bin/python bench/idle_cpu.py [--backend postgres|sqlite|both] [--seconds 20] [--settle 5] [--types 1,128]

PostgreSQL: a temporary database per config (see bench/databases.py); SQLite when unreachable.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rss import CHANNEL, CONFIG, free_port, start_serve, stop_serve, tree, wait_healthy
from bench.rss import database as fresh_database
from bot.sandbox import SlackEmulator

GOAL_CORES = 0.02
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its descendants, in seconds."""
    total = 0
    for each in tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def config_of(types: int) -> dict[str, object]:
    """The bench's refund type, and `types - 1` more like it under other names."""
    config = copy.deepcopy(CONFIG)
    refund = config["task_types"]["refund"]  # type: ignore[index]
    config["task_types"] = {"refund": refund} | {  # type: ignore[index]
        f"refund_{number:03d}": copy.deepcopy(refund) for number in range(1, types)
    }
    return config


def measure(backend: str, types: int, seconds: float, settle: float) -> tuple[str, float, float]:
    """(backend used, cpu seconds, wall seconds) of an idle serve with `types` task types."""
    with tempfile.TemporaryDirectory(prefix="cs-bench-idle-") as tmp, SlackEmulator() as slack:
        directory = Path(tmp)
        slack.add_channel(CHANNEL, "approvals")
        with fresh_database(backend, directory) as (used, db_url):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            serve = start_serve(directory, db_url, slack, port, config_of(types))
            try:
                wait_healthy(serve, url, directory)
                time.sleep(settle)  # start-up work (first settle of every type, imports) is not idle
                cpu0, wall0 = cpu_seconds(serve.pid), time.perf_counter()
                time.sleep(seconds)
                cpu, wall = cpu_seconds(serve.pid) - cpu0, time.perf_counter() - wall0
            finally:
                stop_serve(serve)
    return used, cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=20.0, help="idle seconds measured (default 20)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after /healthz before measuring")
    parser.add_argument("--types", default="1,128", help="task type counts, comma-separated (default 1,128)")
    args = parser.parse_args()
    began = time.perf_counter()
    backends = ("postgres", "sqlite") if args.backend == "both" else (args.backend,)
    counts = [int(each) for each in args.types.split(",")]
    for backend in backends:
        for types in counts:
            used, cpu, wall = measure(backend, types, args.seconds, args.settle)
            cores = cpu / wall
            print(
                f"summary {used}: idle serve, {types} task types: {cpu:.2f} cpu s in {wall:.1f} s = "
                f"{cores:.3f} cores (goal ≤ {GOAL_CORES}): {'PASS' if cores <= GOAL_CORES else 'MISS'}",
                flush=True,
            )
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
