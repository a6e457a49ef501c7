from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.blocks.text import code_block, escape, help_text, mention, slack_date, split, truncate


def test_escape():
    assert escape("a & b < c > d <!channel>") == "a &amp; b &lt; c &gt; d &lt;!channel&gt;"


@pytest.mark.parametrize("limit", range(1, 40))
def test_truncate_never_cuts_an_escape_or_a_token(limit):
    text = escape("a&b<c>d & e") + " <@U123> <!date^1^{time}|x>" + escape(" f&g")
    cut = truncate(text, limit)
    assert len(cut) <= limit
    body = cut.removesuffix("…")
    assert text.startswith(body)
    for i, char in enumerate(body):
        if char == "&":
            assert body.startswith(("&amp;", "&lt;", "&gt;"), i)
    assert body.count("<") == body.count(">")


def test_truncate_keeps_short_text():
    assert truncate("hello", 5) == "hello"
    assert truncate("hello!", 5) == "hell…"
    with pytest.raises(ValueError, match="positive"):
        truncate("x", 0)


def test_split_prefers_line_ends_and_caps_parts():
    text = "\n".join(["x" * 30] * 10)
    parts = split(text, 100, 10)
    assert all(len(p) <= 100 for p in parts)
    assert "\n".join(parts) == text
    assert all(not p.startswith("\n") and not p.endswith("\n") for p in parts)
    assert len(split("y" * 1000, 100, 3)) == 3 and split("y" * 1000, 100, 3)[-1].endswith("…")
    assert split("", 100, 3) == []


def test_mention():
    assert mention("U0123ABC") == "<@U0123ABC>"
    assert mention("W0123ABC") == "<@W0123ABC>"
    assert mention("system") == "system"
    assert mention("U1> <!channel") == "U1&gt; &lt;!channel"


def test_slack_date():
    when = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert slack_date(when) == "<!date^1714564800^{date_short_pretty} at {time_secs}|2024-05-01T12:00:00Z>"
    assert slack_date(when, "{date}", "May <1>") == "<!date^1714564800^{date}|May &lt;1&gt;>"
    with pytest.raises(ValueError, match="aware"):
        slack_date(datetime(2024, 5, 1))


def test_code_block():
    assert code_block({"b": 1, "a": "<x>"}, 100) == '```\n{\n  "a": "&lt;x&gt;",\n  "b": 1\n}\n```'
    assert code_block("plain ``` text", 100) == "```\nplain ``\u200b` text\n```"
    big = code_block({"x": "y" * 10_000}, 500)
    assert len(big) <= 500 and big.endswith("_truncated: 10,013 characters in all_")
    assert code_block("", 100) == "```\n \n```"


def test_help_text_lists_commands_and_types():
    text = help_text({"refund": "Refund a customer order", "restart-service": "Restart <a> service"})
    for command in ("run TYPE TEXT", "status [ID]", "autonomy [TYPE]", "audit [ID]", "help"):
        assert f"`/countersign {command}`" in text
    assert "• `refund`: Refund a customer order" in text
    assert "Restart &lt;a&gt; service" in text
    assert "No task types" in help_text({})


def test_help_text_stays_within_a_section():
    text = help_text({f"type-{i}": "A description of this type. " * 3 for i in range(500)})
    assert len(text) <= 3000 and text.endswith("more_")


def test_dates_use_utc_fallback():
    assert slack_date(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)).endswith("|2024-01-02T03:04:05Z>")
