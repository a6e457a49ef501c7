"""The set-up every chaos scenario shares, in one place: a migrated database, a work directory
holding the config (and the model script, for a scripted model), the Slack emulator with the
scenario's channels and people, the fake Anthropic API when the scenario has a model of its
own, and the environment `countersign serve` runs in.

    with stage("click_storm", backend="postgres", logs=None, channels=[...], users=[...],
               config=CONFIG, script=SCRIPT) as world:
        server = world.serve()
        ...

Everything is torn down when the block ends, in the reverse order of its making: servers
stop before the fakes they talk to close, and those before the database is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bot.sandbox import SlackEmulator
from chaos.common import (
    ChaosFailure,
    Server,
    database,
    emulator,
    note,
    reader,
    serve_env,
    serving,
    summary,
    workspace,
    write_yaml,
)
from tests.fakes.anthropic_server import FakeAnthropic, Responder


class NoModel(ChaosFailure):
    """The scenario asked for the fake Anthropic API, but its stage was built without a model."""


@dataclass
class Stage:
    """One scenario's world, ready for `countersign serve` processes (`serve`)."""

    name: str  # the scenario's, as its summary line names it
    url: str  # the database
    workdir: Path  # config, model script, server logs
    slack: SlackEmulator
    env: dict[str, str]  # of `countersign serve`
    fake: FakeAnthropic | None  # the model's API, when the scenario has a model of its own
    _stack: ExitStack
    servers: list[Server] = field(default_factory=list)

    @property
    def model(self) -> FakeAnthropic:
        if self.fake is None:
            raise NoModel(f"{self.name}: its stage has no fake Anthropic API (pass model=)")
        return self.fake

    def serve(self, name: str = "serve") -> Server:
        """`countersign serve` on a free loopback port, until the stage ends."""
        server = self._stack.enter_context(serving(name, self.env, self.workdir))
        self.servers.append(server)
        return server

    def reader(self, connections: int = 2) -> Engine:
        """An engine for the scenario's own reads (`chaos.common.reader`), disposed with the stage."""
        engine = reader(self.url, connections)
        self._stack.callback(engine.dispose)
        return engine

    def on_close(self, callback: Callable[[], object]) -> None:
        """Run `callback` when the stage ends, before anything made so far is torn down."""
        self._stack.callback(callback)

    def failed(self, exc: ChaosFailure, **fields: object) -> int:
        """The run could not go on: each server's log tail on stderr, then a FAIL summary naming why."""
        for server in self.servers:
            note(self.name, f"--- {server.name} log\n{server.output()}")
        return summary(self.name, {"error": json.dumps(str(exc)), **fields}, False)


@contextmanager
def stage(
    name: str,
    *,
    backend: str,
    logs: Path | None,
    channels: Sequence[str],
    users: Sequence[str],
    config: dict[str, Any],
    script: dict[str, Any] | None = None,
    model: Responder | None = None,
    slack: SlackEmulator | None = None,
) -> Iterator[Stage]:
    """A scenario's world (see the module docstring); `logs` keeps the work directory there.

    `script` gives `countersign serve` a scripted model (`COUNTERSIGN_MODEL_SCRIPT`); `model`
    instead answers the fake Anthropic API that serve reaches through the official SDK.
    `slack` is an emulator not yet started, for a scenario that watches Slack's calls itself.
    """
    if script is not None and model is not None:
        raise ValueError(f"stage {name!r}: a scripted model or a fake Anthropic API, not both")
    with ExitStack() as stack:
        url = stack.enter_context(database(backend, name))
        workdir = stack.enter_context(workspace(logs, name))
        emulated = stack.enter_context(emulator(channels, users, slack))
        fake = None
        if model is not None:
            fake = stack.enter_context(FakeAnthropic())
            fake.respond_with(model)
        env = serve_env(
            url,
            write_yaml(workdir, "countersign.yml", config),
            emulated,
            script=None if script is None else write_yaml(workdir, "script.yml", script),
            anthropic_url=None if fake is None else fake.url,
        )
        yield Stage(name, url, workdir, emulated, env, fake, stack)
