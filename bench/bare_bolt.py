"""A bare Bolt app behind the same server as `countersign serve`: the baseline of a whole serve's
decisions per second (`bench/serve_workers.py`).

The app verifies Slack's signature (Bolt's own check) and acks an Approve click from a no-op
listener, answering when the listener returns (`process_before_response=True`, as ours does).
It is served exactly as `serve --workers N` serves: waitress with serve's settings for N = 1
(`bot.server.listen`), gunicorn with serve's settings for N > 1 (`bot.prefork`). No database.

    .venv/bin/python -m bench.bare_bolt --port PORT --workers N --signing-secret S --token T --slack-api-url URL
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot import action_ids


class BareShare:
    """One worker's share: the bare app, no background work."""

    def __init__(self, secret: str, token: str, api_url: str) -> None:
        app = App(signing_secret=secret, client=WebClient(token=token, base_url=api_url), process_before_response=True)

        def approve(ack: Ack) -> None:
            ack()

        app.action(action_ids.APPROVE)(approve)
        self.wsgi = SlackRequestHandler(app)

    def stop(self) -> None:
        return None

    def close(self, timeout_s: float) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--signing-secret", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--slack-api-url", required=True)
    args = parser.parse_args()

    def share(_slot: int = 0) -> BareShare:
        return BareShare(args.signing_secret, args.token, args.slack_api_url)

    if args.workers > 1:
        from bot.prefork import Listening, serve_workers

        serve_workers(share, Listening("127.0.0.1", args.port, args.workers))
        return
    from bot.server import listen

    listen(share().wsgi, "127.0.0.1", args.port).run()


if __name__ == "__main__":
    main()
