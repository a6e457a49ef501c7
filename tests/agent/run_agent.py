"""Run the drafting loop and the executor over DB_URL until killed: the agent crash tests' victim.

Usage: python tests/agent/run_agent.py DB_URL CONFIG_PATH ANTHROPIC_URL  (project root as cwd)
"""

from __future__ import annotations

import sys
import threading

import anthropic

from agent.anthropic_model import AnthropicModel
from agent.executor import Executor
from agent.runner import AgentRunner
from agent.tools import load_tool_modules
from agent.worker import work
from core.clock import SystemClock
from core.config import load_config
from core.db import make_engine, make_sessionmaker
from tests.agent import sample_tools


def main(argv: list[str]) -> int:
    url, config_path, anthropic_url = argv[1:4]
    sample_tools.use_database(url)
    config = load_config(config_path)
    sessions = make_sessionmaker(make_engine(url))
    registry = load_tool_modules(config.tools.modules)
    clock = SystemClock()
    client = anthropic.Anthropic(api_key="test-key", base_url=anthropic_url, max_retries=0, timeout=120)
    runner = AgentRunner(sessions, config, registry, AnthropicModel(client), clock, owner="doomed-agent")
    executor = Executor(sessions, registry, clock, owner="doomed-executor")
    work([runner.run_once, executor.run_once], threading.Event(), idle_s=0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
