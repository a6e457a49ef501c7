"""Chaos scripts: the product under fire (click storms, Slack and model faults, authorization
attacks), each bounded in time and requests, loopback only, ending in one summary line that
says PASS or FAIL. A lost or duplicated effect is a bug to fix, not a number to publish.

    .venv/bin/python -m chaos.click_storm --help

They drive the real `countersign serve` through signed HTTP requests, with the Slack emulator
(`bot.sandbox`) and the fake Anthropic API (`tests.fakes.anthropic_server`) on 127.0.0.1.
"""
