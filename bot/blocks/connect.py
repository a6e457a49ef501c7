"""A person's own connect links: the refusal an approver gets when they have not connected their
credential, and the direct message a requester gets. Personal (each link carries that
person's state), so never on the shared card."""

from __future__ import annotations

from datetime import timedelta

from bot import action_ids
from bot.blocks.kit import Block, actions, context, section, url_button
from bot.blocks.text import escape
from bot.blocks.views import CardView, ConnectLinkView

MAX_LINKS = 25  # an actions block's limit; a tool declares far fewer secrets


def connect_blocks(text: str, links: list[ConnectLinkView], *, lasts: timedelta) -> list[Block]:
    """`text` (mrkdwn, already escaped) and a Connect button per link."""
    blocks = [section("connect_text", text)]
    if links:
        buttons = [
            url_button(f"Connect {link.name}", action_ids.CONNECT, link.url, style="primary")
            for link in links[:MAX_LINKS]
        ]
        blocks.append(actions("connect", buttons))
        providers = ", ".join(sorted({escape(link.provider) for link in links}))
        note = f"You sign in at {providers}. The link is yours alone and works once, within {_spelled(lasts)}."
        blocks.append(context("connect_note", note))
    return blocks


def requester_connect(card: CardView, links: list[ConnectLinkView], *, lasts: timedelta) -> tuple[str, list[Block]]:
    """The direct message that asks a requester to connect what their request runs with."""
    names = ", ".join(f"`{escape(link.name)}`" for link in links)
    text = (
        f"*{escape(card.tool)}* ({escape(card.task_type)}, `{card.action_public_id}`), which you asked for, runs with "
        f"your own {names}. It cannot be approved until you connect it."
    )
    return text, connect_blocks(text, links, lasts=lasts)


def _spelled(span: timedelta) -> str:
    """`10 minutes`, `24 hours`, `1 hour`."""
    minutes = max(1, int(span.total_seconds() // 60))
    amount, unit = (minutes // 60, "hour") if minutes % 60 == 0 else (minutes, "minute")
    return f"{amount} {unit}{'' if amount == 1 else 's'}"
