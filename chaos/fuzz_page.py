"""The demo page under fire: the `cross_origin` shape of `chaos.fuzz_shapes` (posts to the page
with a foreign `Origin`, a wrong `Host`, a `text/plain` body, or a missing or wrong page
token: 403 or 415), and the page itself, run in this process in a workspace of its own, so
that anything a request got it to do shows there.
"""

from __future__ import annotations

import http.client
import json
import string
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import strategies as st

from bot import action_ids
from bot.blocks.card import decide_block_id
from bot.sandbox import SlackEmulator
from bot.sandbox.actor import Actor, Persona
from bot.sandbox.page import TOKEN_HEADER, SandboxPage
from bot.sandbox.signed import FORM
from chaos.common import SECRET
from chaos.fuzz_world import Aim, Request

HEADER_TEXT = st.text(alphabet=string.ascii_letters + string.digits + ".:-_/[]", max_size=40)
PAGE_ROUTES = ("/api/compose", "/api/click", "/api/submit", "/api/close", "/api/home", "/api/state")


@st.composite
def cross_origin(draw: st.DrawFn, aim: Aim) -> Request:
    own = f"127.0.0.1:{aim.page_port}"
    flaws = draw(st.sets(st.sampled_from(["host", "origin", "type", "token"]), min_size=1))
    path = draw(st.sampled_from(PAGE_ROUTES))
    method = "GET" if path == "/api/state" else "POST"
    if method == "GET":
        flaws.discard("type")
        if not flaws:
            flaws.add("origin")
        path += "?user=" + draw(st.sampled_from(aim.approvers))
    host = own
    if "host" in flaws:
        host = draw(
            st.sampled_from(
                [
                    "evil.example",
                    f"evil.example:{aim.page_port}",
                    f"127.0.0.1.nip.io:{aim.page_port}",
                    f"localhost.attacker.test:{aim.page_port}",
                    "127.0.0.1",
                    f"127.0.0.1:{aim.page_port + 1}",
                    f"0.0.0.0:{aim.page_port}",
                    f"127.1:{aim.page_port}",
                    "",
                ]
            )
            | HEADER_TEXT.filter(lambda name: name.lower() != own)
        )
    headers = {"Host": host, "Content-Type": "application/json", TOKEN_HEADER: aim.page_token}
    if "origin" in flaws:
        headers["Origin"] = draw(
            st.sampled_from(
                [
                    "http://evil.example",
                    "null",
                    f"http://localhost:{aim.page_port}",
                    f"https://{own}",
                    f"http://{own}.evil.example",
                    f"http://127.0.0.1:{aim.page_port + 1}",
                ]
            )
            | HEADER_TEXT.map(lambda text: "http://" + text).filter(lambda origin: origin.lower() != f"http://{own}")
        )
    elif draw(st.booleans()):
        headers["Origin"] = f"http://{host}"
    if "type" in flaws:
        headers["Content-Type"] = draw(
            st.sampled_from(["text/plain", "text/plain;charset=UTF-8", FORM, "multipart/form-data; boundary=x", ""])
        )
    if "token" in flaws:
        token = aim.page_token
        wrong = draw(st.sampled_from(["", token[:-1], token + "x", token.upper()]) | HEADER_TEXT)
        if wrong and draw(st.booleans()):
            headers[TOKEN_HEADER] = wrong
        else:
            headers.pop(TOKEN_HEADER)
    request = {
        "user": draw(st.sampled_from([*aim.approvers, *aim.strangers])),
        "channel": aim.channel,
        "text": draw(st.sampled_from(["/countersign run refund Refund order 41", "<@U0BOT> refund Refund order 42"])),
        "view_id": "V0FUZZ",
        "where": {"channel": aim.channel, "ts": "1700000000.000100"},
        "block_id": decide_block_id(aim.actions[0].params_hash),
        "element": {"type": "button", "action_id": action_ids.APPROVE, "value": aim.actions[0].public_id},
        "values": {},
    }
    body = b"" if method == "GET" else json.dumps(request).encode()
    return Request(
        "cross-origin",
        "+".join(sorted(flaws)),
        body,
        {key: value for key, value in headers.items() if key == "Host" or value},
        "403/415",
        path=path,
        target="page",
        method=method,
        answers=frozenset({403, 415}),
    )


@contextmanager
def demo_page(events_url: str, channel: str, people: dict[str, str]) -> Iterator[tuple[SandboxPage, SlackEmulator]]:
    """The demo page in this process, on a free port, acting in a workspace of its own (so that
    anything a request got it to do shows there) towards the app at `events_url`."""
    with SlackEmulator(token="xoxb-page") as slack:  # noqa: S106 - a local emulator's token
        slack.add_channel(channel, channel.lower())
        for user in people:
            slack.add_user(user, user.lower())
        personas = [Persona(user, user.lower(), role) for user, role in people.items()]
        page = SandboxPage(Actor(slack, events_url, SECRET, personas), host="127.0.0.1", port=0).start()
        try:
            yield page, slack
        finally:
            page.close()


def workspace_size(slack: SlackEmulator) -> int:
    """Everything a request could add to the page's workspace: messages, ephemerals, views."""
    workspace = slack.workspace
    messages = sum(len(workspace.messages(channel.id)) for channel in workspace.channels())
    return messages + len(workspace.ephemerals()) + len(workspace.views()) + len(slack.calls)


def page_answers(page: SandboxPage) -> bool:
    """The page answers its own requests (so that its refusals of the others mean something)."""
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
    try:
        connection.request("GET", "/api/personas", headers={"Host": f"127.0.0.1:{page.port}", TOKEN_HEADER: page.token})
        reply = connection.getresponse()
        return reply.status == 200 and bool(json.loads(reply.read()))
    finally:
        connection.close()
