"""Run an executor over DB_URL with the sample tools until killed: the crash test's victim.

Usage: python tests/agent/run_executor.py DB_URL OWNER  (project root as cwd and on PYTHONPATH)
"""

from __future__ import annotations

import sys

from agent.executor import Executor
from agent.tools import load_tool_modules
from core.clock import SystemClock
from core.db import make_engine, make_sessionmaker
from tests.agent import sample_tools


def main(argv: list[str]) -> int:
    url, owner = argv[1], argv[2]
    sample_tools.use_database(url)
    engine = make_engine(url)
    registry = load_tool_modules(["tests.agent.sample_tools"])
    handled = Executor(make_sessionmaker(engine), registry, SystemClock(), owner=owner).run_until_idle()
    print(f"handled {handled} actions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
