"""Small pieces of plain WSGI shared by our routes: a JSON answer, and a request body read
only when its declared length is within the route's limit."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment


class BodyRefused(Exception):
    """A request body refused before it was read (or when it was shorter than it said)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    """The body, read only when `Content-Length` is declared, ASCII digits and at most `limit`
    bytes: a body over the limit is refused (413) before one byte of it is read, and a body
    of unknown length (411) is never read at all, so no sender decides how much we buffer.

    waitress de-chunks a chunked body and sets its length before the app runs; a server that
    passes chunked input through gets 411, which Slack (it always sends a length) never sees.
    """
    declared = environ.get("CONTENT_LENGTH") or ""
    if not (declared.isascii() and declared.isdigit()):
        raise BodyRefused(411, f"a Content-Length header is required (got {declared[:20]!r})")
    length = int(declared)
    if length > limit:
        raise BodyRefused(413, f"request body of {length} bytes is over the limit of {limit} bytes")
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    if len(body) != length:
        raise BodyRefused(400, f"request body ended after {len(body)} of its {length} bytes")
    return body


def answer_json(start_response: StartResponse, status: int, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]
