"""Block Kit renderers: pure functions from the frozen views in `views.py` to Slack's block dicts.

No database, no Slack client, no Bolt here: callers build the views from their rows and send what
these functions return. Every payload stays within Slack's Block Kit limits (the tests check each
one with slack_sdk's models). Untrusted text (requests, model output, reasons) is always escaped and
shown in `verbatim` text objects, so it can neither ping (`<!channel>`) nor forge links or mentions.
"""

from bot.blocks.card import approval_card, card_buttons, card_text, params_hash_from_block_id, result_reply
from bot.blocks.home import home_view
from bot.blocks.modals import edit_modal, parse_edit, reject_modal, veto_modal
from bot.blocks.task import task_message
from bot.blocks.text import help_text
from bot.blocks.views import CardView, HomeView, TaskView

__all__ = [
    "CardView",
    "HomeView",
    "TaskView",
    "approval_card",
    "card_buttons",
    "card_text",
    "edit_modal",
    "help_text",
    "home_view",
    "params_hash_from_block_id",
    "parse_edit",
    "reject_modal",
    "result_reply",
    "task_message",
    "veto_modal",
]
