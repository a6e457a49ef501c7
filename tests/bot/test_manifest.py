from __future__ import annotations

import json
from pathlib import Path

import yaml
from jsonschema import Draft7Validator

from bot import action_ids
from bot.installations import DEFAULT_SCOPES

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("slack_schema") / "manifest.schema.json"  # Slack's, MIT: see its README


def _manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def test_manifest_is_valid_against_slacks_published_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(Draft7Validator(schema).iter_errors(_manifest()), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_manifest_asks_for_minimal_scopes_and_the_surfaces_the_app_uses() -> None:
    manifest = _manifest()
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == [
        "app_mentions:read",
        "channels:history",  # a timed-out post is looked for before it is sent again
        "chat:write",
        "commands",
        "groups:history",
        "im:history",
        "im:write",
        "usergroups:read",
        "users:read",
    ]
    assert sorted(DEFAULT_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"])  # what an install asks for
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == [
        "app_home_opened",
        "app_mention",
        "app_uninstalled",
        "tokens_revoked",
    ]
    assert manifest["oauth_config"]["redirect_urls"] == ["https://countersign.example.com/slack/oauth_redirect"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/countersign"
    assert command["url"].endswith("/slack/events")


def test_action_ids_match_the_public_contract() -> None:
    assert {
        action_ids.APPROVE,
        action_ids.REJECT,
        action_ids.EDIT,
        action_ids.VETO,
        action_ids.ACKNOWLEDGE,
        action_ids.PROMOTE,
        action_ids.DISMISS,
    } == {"approve", "reject", "edit", "veto", "acknowledge", "promote", "dismiss"}
