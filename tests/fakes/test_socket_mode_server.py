"""The fake Socket Mode server keeps Slack's rules, checked with a plain WebSocket client (the
`websockets` library's) and the real `WebClient`: only an app-level token opens a connection,
a URL is good for one connection, each connection is greeted with `hello`, acks are matched to
envelopes by id, and a retried event says which attempt it is."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.fakes.slack_server import SlackEmulator, seeded_emulator
from tests.fakes.socket_mode_server import APP_TOKEN, SocketModeServer


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with seeded_emulator() as emulator:
        yield emulator


@pytest.fixture
def sockets(slack: SlackEmulator) -> Iterator[SocketModeServer]:
    with SocketModeServer(slack) as server:
        yield server


def _open(slack: SlackEmulator, token: str = APP_TOKEN) -> str:
    url: str = WebClient(base_url=slack.api_url, timeout=5).apps_connections_open(app_token=token)["url"]
    return url


def _hello(connection: ClientConnection) -> dict[str, object]:
    hello: dict[str, object] = json.loads(connection.recv(timeout=5))
    return hello


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("xoxb-test", "not_allowed_token_type"),  # the bot token pasted as the app's
        ("xapp-1-A0APP-1-other", "invalid_auth"),
    ],
)
def test_only_the_app_level_token_opens_a_connection(
    slack: SlackEmulator, sockets: SocketModeServer, token: str, error: str
) -> None:
    with pytest.raises(SlackApiError) as refused:
        _open(slack, token)
    assert refused.value.response["error"] == error
    assert sockets.links == 0


def test_a_url_is_good_for_one_connection_and_each_is_greeted(slack: SlackEmulator, sockets: SocketModeServer) -> None:
    url = _open(slack)
    assert url.startswith(f"ws://127.0.0.1:{sockets.port}/link/?ticket=")
    with connect(url) as first:
        hello = _hello(first)
        assert (hello["type"], hello["num_connections"], hello["connection_info"]) == ("hello", 1, {"app_id": "A0APP"})
        with pytest.raises(InvalidStatus):  # the same URL again: a new one must be asked for
            connect(url)
        assert sockets.refused == 1
        with connect(_open(slack)) as second:
            assert _hello(second)["num_connections"] == 2
            sockets.link(2)


def test_acks_are_matched_by_envelope_id_and_a_retried_event_counts_its_attempts(
    slack: SlackEmulator, sockets: SocketModeServer
) -> None:
    with connect(_open(slack)) as client:
        _hello(client)
        sockets.link(1)
        command = sockets.send(
            "slash_commands", {"command": "/countersign", "text": "help"}, accepts_response_payload=True
        )
        event = sockets.send("events_api", {"type": "event_callback", "event_id": "Ev1"}, lose_ack=True)
        delivered = [json.loads(client.recv(timeout=5)) for _ in range(2)]
        assert [(d["envelope_id"], d["type"], d["accepts_response_payload"]) for d in delivered] == [
            (command, "slash_commands", True),
            (event, "events_api", False),
        ]
        assert (delivered[1]["retry_attempt"], delivered[1]["retry_reason"]) == (0, "")

        client.send(json.dumps({"envelope_id": command, "payload": {"text": "Try `run`"}}))
        client.send(json.dumps({"envelope_id": event}))
        client.send(json.dumps({"envelope_id": "not-one-of-ours"}))
        assert sockets.ack(command).payload == {"text": "Try `run`"}
        assert sockets.lost_ack(event).payload is None
        assert [e.envelope_id for e in sockets.unanswered()] == []

        [retry] = sockets.redeliver()  # the event's ack never reached Slack
        again = json.loads(client.recv(timeout=5))
        assert (again["envelope_id"], again["payload"], again["retry_attempt"]) == (retry, delivered[1]["payload"], 1)
        assert [e.envelope_id for e in sockets.unanswered()] == [retry]
        client.send(json.dumps({"envelope_id": retry}))
        sockets.ack(retry)
    assert sockets.strays == ['{"envelope_id": "not-one-of-ours"}']


def test_disconnect_tells_the_newest_connection_why(slack: SlackEmulator, sockets: SocketModeServer) -> None:
    with connect(_open(slack)) as client:
        _hello(client)
        sockets.link(1)
        assert sockets.disconnect("warning") == 1
        message = json.loads(client.recv(timeout=5))
        assert (message["type"], message["reason"]) == ("disconnect", "warning")
    sockets.closed(1)
