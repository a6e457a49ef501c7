"""`GET /oauth/{provider}/start` and `/oauth/{provider}/callback`: a person connecting their own
credential from Slack (`agent.connect` does the work; this is the HTTP around it).

`start?state=…` checks the link and redirects (302) to the provider's sign-in; the provider
sends the person back to `callback?code=…&state=…` (or `error=…`), which stores the token and
answers a small page. Every refusal is a 400 page naming the problem. Pages are escaped,
never cached, and never framed.
"""

from __future__ import annotations

import html
import logging
import re
import urllib.parse
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

from agent.connect import ConnectFlow, ConnectRefused

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)
PREFIX = "/oauth/"
_PATH = re.compile(r"/oauth/(?P<provider>[^/]{1,64})/(?P<step>start|callback)")
_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),  # the callback's URL carries a code: never pass it on
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
]


class ConnectRoutes:
    def __init__(self, flow: ConnectFlow | None) -> None:
        self.flow = flow

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        matched = _PATH.fullmatch(path)
        if matched is None or self.flow is None:
            return _page(start_response, 404, "Not found", "There is no such page.")
        if method != "GET":
            return _page(start_response, 405, "GET only", "Open this link in a browser.")
        provider = urllib.parse.unquote(matched["provider"])
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=20)

        def one(key: str) -> str | None:
            values = query.get(key)
            return values[0] if values else None

        try:
            if matched["step"] == "start":
                target = self.flow.authorize_url(provider, one("state"))
                start_response("302 Found", [("Location", target), ("Content-Length", "0"), *_HEADERS])
                return [b""]
            connected = self.flow.complete(provider, one("state"), one("code"), one("error"))
        except ConnectRefused as refused:
            log.info("connect %s refused: %s", matched["step"], refused.problem)
            return _page(start_response, 400, "Not connected", refused.problem)
        name, who = connected.name, connected.user
        log.info("connected %s for %s through %s", name, who, provider)
        message = f"Connected {name} for {who}; you can close this tab."
        return _page(start_response, 200, "Connected", message)


def _page(start_response: StartResponse, status: int, title: str, message: str) -> list[bytes]:
    body = (
        "<!doctype html>\n<html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width">'
        f"<title>countersign · {html.escape(title)}</title>"
        '<body style="font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>\n"
    ).encode()
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *_HEADERS]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]
