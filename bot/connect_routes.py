"""`/oauth/{provider}/start` and `/oauth/{provider}/callback`: a person connecting their own
credential from Slack (`agent.connect` does the work; this is the HTTP around it).

`GET start?state=…` checks the link without spending it and answers a page naming the Slack
user the account will be connected for, with a Continue button; it sets a cookie carrying a
random nonce for this browser (one cookie per link). The button POSTs the state and a CSRF token
(an HMAC of the state keyed by the nonce, so only a page this browser was given can post it) to
`start`, which binds the link to the nonce and redirects (303) to the provider's sign-in. The
provider sends the browser back to `callback?code=…&state=…` (or `error=…`): only the browser
holding that nonce completes it, which stores the token and answers a small page; the cookie is
cleared. A link planted in someone else's browser (or the provider's URL, sent on) therefore
connects nothing: the callback lands in a browser without the cookie and is refused.

Every refusal is a page naming the problem. Pages are escaped, never cached, and never framed.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING

from agent.connect import ConnectFlow, ConnectRefused, PendingLink, WrongBrowser, link_key

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)
PREFIX = "/oauth/"
COOKIE_PREFIX = "countersign_connect_"
# Long enough to sign in at the provider after pressing Continue (two factors, a password reset);
# a browser that takes longer opens the link again.
COOKIE_MAX_AGE = timedelta(minutes=15)
MAX_FORM = 4096  # the form carries a state and a token: a few hundred bytes
_PATH = re.compile(r"/oauth/(?P<provider>[^/]{1,64})/(?P<step>start|callback)")
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_FORM_TYPE = "application/x-www-form-urlencoded"
_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),  # the callback's URL carries a code: never pass it on
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
]
Header = tuple[str, str]
Names = Callable[[str, str | None], str | None]  # (Slack user, team) → what Slack calls them


def _no_names(_user: str, _team_id: str | None) -> str | None:
    return None


class ConnectRoutes:
    def __init__(self, flow: ConnectFlow | None, names: Names = _no_names) -> None:
        self.flow, self.names = flow, names

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        matched = _PATH.fullmatch(path)
        if matched is None or self.flow is None:
            return _page(start_response, 404, "Not found", "There is no such page.")
        step, provider = matched["step"], urllib.parse.unquote(matched["provider"])
        allowed = ("GET", "POST") if step == "start" else ("GET",)
        if method not in allowed:
            return _page(start_response, 405, f"{' or '.join(allowed)} only", "Open this link in a browser.")
        if step == "start" and method == "POST":
            return self._confirm(self.flow, provider, environ, start_response)
        try:
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=20)
        except ValueError:  # more fields than any link or provider's redirect carries
            return _page(start_response, 400, "Not connected", "this link is not one countersign issued")
        state = _one(query, "state")
        cookie = _Cookie(self.flow.public_url, state)
        if step == "start":
            return self._ask(self.flow, provider, state, cookie, environ, start_response)
        # The cookie is cleared whatever the answer: the link is spent, or this is not its browser.
        cleared = cookie.clear()
        try:
            connected = self.flow.complete(
                provider, state, _one(query, "code"), _one(query, "error"), cookie.read(environ)
            )
        except ConnectRefused as refused:
            _log_refusal(step, refused)
            return _page(start_response, 400, "Not connected", refused.problem, cleared)
        name, who = connected.name, connected.user
        log.info("connected %s for %s through %s", name, who, provider)
        message = f"Connected {name} for {who}; you can close this tab."
        return _page(start_response, 200, "Connected", message, cleared)

    def _ask(
        self,
        flow: ConnectFlow,
        provider: str,
        state: str | None,
        cookie: _Cookie,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> list[bytes]:
        """The confirmation page: whom this connects, and a Continue button only this browser can use."""
        browser = cookie.read(environ)
        try:
            pending = flow.pending(provider, state, browser)
        except ConnectRefused as refused:
            _log_refusal("start", refused)
            return _page(start_response, 400, "Not connected", refused.problem)
        assert state is not None  # pending checked it
        nonce = browser or secrets.token_urlsafe(32)  # the same browser opening it again keeps its nonce
        content = _ask_html(pending, self.names, state, nonce)
        return _page_html(start_response, 200, "Connect your account", content, cookie.set(nonce))

    def _confirm(
        self, flow: ConnectFlow, provider: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> list[bytes]:
        """Continue pressed: check the form came from this browser's page, bind, go to the provider."""
        content_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if content_type != _FORM_TYPE:
            problem = f"expected a form post ({_FORM_TYPE}), got {content_type!r}"
            return _page(start_response, 415, "Not a form", problem)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM:
            return _page(start_response, 413, "Too large", f"a connect form is under {MAX_FORM} bytes")
        try:
            body = environ["wsgi.input"].read(length).decode("ascii")
            form = urllib.parse.parse_qs(body, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return _page(start_response, 400, "Not connected", "the form is not one countersign's page sends")
        state, token = _one(form, "state"), _one(form, "csrf")
        cookie = _Cookie(flow.public_url, state)
        browser = cookie.read(environ)
        if state is None:
            return _page(start_response, 400, "Not connected", "the form names no link: open the link again")
        if browser is None:
            problem = "this browser has no countersign cookie for this link: allow cookies and open the link again"
            return _page(start_response, 403, "Not connected", problem)
        if token is None or not hmac.compare_digest(token.encode(), _csrf_token(browser, state).encode()):
            problem = "the form was not sent from countersign's page in this browser: open the link again"
            return _page(start_response, 403, "Not connected", problem)
        try:
            target = flow.confirm(provider, state, browser)
        except ConnectRefused as refused:
            _log_refusal("confirm", refused)
            return _page(start_response, 400, "Not connected", refused.problem)
        # 303: the browser follows with a GET. The cookie is set again so its time starts now.
        headers = [("Location", target), ("Content-Length", "0"), *_HEADERS, cookie.set(browser)]
        start_response("303 See Other", headers)
        return [b""]


class _Cookie:
    """The cookie carrying this browser's nonce for one link: HttpOnly; SameSite=Lax, so it comes
    back on the provider's top-level redirect but not on another site's POST; Secure when the
    public URL is https; scoped to the connect routes."""

    def __init__(self, public_url: str, state: str | None) -> None:
        parts = urllib.parse.urlsplit(public_url)
        self.name = COOKIE_PREFIX + link_key(state) if state else None
        self.path = f"{parts.path.rstrip('/')}{PREFIX}"
        self.secure = parts.scheme == "https"

    def read(self, environ: WSGIEnvironment) -> str | None:
        # Split by hand: http.cookies gives up on the rest of the header at the first cookie it
        # dislikes, and other apps on this host may set any cookie with Path=/.
        for pair in str(environ.get("HTTP_COOKIE", "")).split(";") if self.name else []:
            name, _, value = pair.strip().partition("=")
            if name == self.name and _NONCE.fullmatch(value):
                return value
        return None

    def set(self, nonce: str) -> Header:
        return self._header(nonce, int(COOKIE_MAX_AGE.total_seconds()))

    def clear(self) -> tuple[Header, ...]:
        return (self._header("", 0),) if self.name else ()

    def _header(self, value: str, max_age: int) -> Header:
        attributes = [f"{self.name}={value}", f"Path={self.path}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
        return ("Set-Cookie", "; ".join([*attributes, "Secure"] if self.secure else attributes))


def _csrf_token(nonce: str, state: str) -> str:
    """Tied to this browser's nonce and this link: a page can only be posted by the browser it
    was given to (another site can read neither the cookie nor the page)."""
    return hmac.new(nonce.encode(), state.encode(), hashlib.sha256).hexdigest()


def _ask_html(pending: PendingLink, names: Names, state: str, nonce: str) -> str:
    name = names(pending.user, pending.team_id)
    person = f"{name} ({pending.user})" if name else pending.user
    workspace = f" in Slack workspace {pending.team_id}" if pending.team_id else ""
    e = html.escape
    return (
        f"<p>This connects a <b>{e(pending.provider)}</b> account to countersign as "
        f"<code>{e(pending.name)}</code> for the Slack user <b>{e(person)}</b>{e(workspace)}. "
        "countersign will use it for the actions it runs for that person.</p>"
        f"<p><strong>If you are not {e(person)}, close this page.</strong> Whoever signs in next "
        f"gives their {e(pending.provider)} account to {e(pending.user)}. Continue only if you "
        "opened this link yourself, from countersign's message to you in Slack; names can be "
        "chosen by anyone, the user id is what counts.</p>"
        '<form method=post action="start">'
        f'<input type=hidden name=state value="{e(state)}">'
        f'<input type=hidden name=csrf value="{_csrf_token(nonce, state)}">'
        f"<button type=submit>Continue to {e(pending.provider)}</button></form>"
    )


def _one(values: dict[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[0] if found else None


def _log_refusal(step: str, refused: ConnectRefused) -> None:
    # A link used from a browser that did not confirm it is what a planted link looks like.
    level = logging.WARNING if isinstance(refused, WrongBrowser) else logging.INFO
    log.log(level, "connect %s refused: %s", step, refused.problem)


def _page(
    start_response: StartResponse, status: int, title: str, message: str, headers: Sequence[Header] = ()
) -> list[bytes]:
    return _page_html(start_response, status, title, f"<p>{html.escape(message)}</p>", *headers)


def _page_html(start_response: StartResponse, status: int, title: str, content: str, *headers: Header) -> list[bytes]:
    body = (
        "<!doctype html>\n<html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width">'
        f"<title>countersign · {html.escape(title)}</title>"
        '<body style="font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em">'
        f"<h1>{html.escape(title)}</h1>{content}</body></html>\n"
    ).encode()
    sent = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *_HEADERS, *headers]
    start_response(f"{status} {HTTPStatus(status).phrase}", sent)
    return [body]
