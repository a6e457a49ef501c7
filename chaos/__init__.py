"""Chaos scripts: the product under fire (click storms, Slack and model faults, authorization
attacks), each bounded in time and requests, loopback only, ending in one summary line that
says PASS or FAIL. A lost or duplicated effect is a bug to fix, not a number to publish.

    .venv/bin/python -m chaos.click_storm --help

They drive the real `countersign serve` through signed HTTP requests, with the Slack emulator
(`bot.sandbox`) and the fake Anthropic API (`tests.fakes.anthropic_server`) on 127.0.0.1.

What is where:
- the scenarios, each a script (`python -m chaos.NAME`): `authorization`, `click_storm`,
  `crash_loop`, `fuzz_inputs`, `model_faults`, `slack_faults`;
- `stage.py`: the set-up they all share (database, work directory with config and model
  script, Slack emulator, fake Anthropic API, serve's environment, `countersign serve`
  processes, the FAIL line when a run cannot go on); `common.py`: its parts, signed Slack
  requests, bounded waiting, the summary line; `tools.py`: the tools the agents call;
- a scenario too big for one module keeps its parts beside it, named after it:
  `authz_harness.py` / `authz_attacks.py`; `crash_config.py`, `crash_servers.py`,
  `crash_traffic.py`, `crash_checks.py` and `_crash_support.py` (what runs inside the
  killed servers); `fuzz_world.py`, `fuzz_state.py`, `fuzz_oracle.py`, `fuzz_payloads.py`,
  `fuzz_requests.py`, `fuzz_shapes.py`, `fuzz_page.py`, `fuzz_sender.py`;
  `slack_faults_checks.py`.
A scenario's own module is run as `__main__`: its parts never import it (that would load it
twice), so what they share lives in the parts.
"""
