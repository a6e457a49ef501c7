from __future__ import annotations

from bot.directory import SlackDirectory
from tests.fakes.slack_server import SlackEmulator, client_for


def test_user_groups_resolve_to_members_and_are_cached_for_a_short_while() -> None:
    now = [1000.0]
    with SlackEmulator() as slack:
        for user in ("U0CAROL", "U0DAVE"):
            slack.add_user(user, user.lower())
        slack.add_usergroup("S0LEADS", "payments-leads", ["U0CAROL", "U0DAVE"])
        directory = SlackDirectory(client_for(slack), ttl_s=60, now=lambda: now[0])

        assert directory.members("@payments-leads") == {"U0CAROL", "U0DAVE"}
        assert directory.members("payments-leads") == {"U0CAROL", "U0DAVE"}
        assert directory.members("@nobody-here") == frozenset()
        assert len(slack.calls_to("usergroups.users.list")) == 1  # cached

        slack.add_usergroup("S0LEADS", "payments-leads", ["U0CAROL"])
        now[0] += 61
        assert directory.members("@payments-leads") == {"U0CAROL"}
        assert len(slack.calls_to("usergroups.users.list")) == 2


def test_an_unreadable_group_grants_nobody() -> None:
    with SlackEmulator() as slack:
        slack.add_user("U0CAROL", "carol")
        slack.add_usergroup("S0LEADS", "leads", ["U0CAROL"])
        slack.fail(method="usergroups.users.list", status=200, error="missing_scope", times=None)
        assert SlackDirectory(client_for(slack)).members("@leads") == frozenset()
