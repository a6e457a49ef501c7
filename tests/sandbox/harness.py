"""The demo assembly, started in this process on free ports, with the scripted model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.scripted_model import ScriptedModel
from bot.demo import SCRIPT, Demo, start_demo
from core.clock import Clock


@contextmanager
def running_demo(
    folder: Path, clock: Clock | None = None, database: str = "demo.db", **environment: str
) -> Iterator[Demo]:
    """A demo with its data in `folder`; `environment` is set while it runs (e.g. config overrides).
    `clock`: the app's time (a `ShiftedClock` lets a test skip a veto window instead of waiting);
    `database`: the file's name in `folder`."""
    environment = {"COUNTERSIGN_SHOP_DB": str(folder / "shop.db"), **environment}
    previous = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        demo = start_demo(
            database_url=f"sqlite:///{folder / database}",
            model=(ScriptedModel.from_file(SCRIPT), "scripted"),
            app_port=0,
            page_port=0,
            channel_pace_s=0.05,
            idle_s=0.05,
            tick_s=0.5,
            clock=clock,
        )
        try:
            yield demo
        finally:
            demo.close()
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
