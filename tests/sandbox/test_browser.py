"""The demo in a real browser, beyond the README's tour (`test_tour.py`): a narrow window, another
origin that tries to post, untrusted text, and every payload the app sends rendered by the
page. Every click and submission reaches the app as a signed Slack request."""

from __future__ import annotations

from typing import Any

import pytest

from bot.demo import Demo
from tests.sandbox.browser import need_browser

pytestmark = pytest.mark.slow
REQUESTER, APPROVER = "U0REQUESTER", "U0APPROVER"


def _open(page: Any, demo: Demo, user: str, channel: str) -> None:
    page.goto(f"{demo.url}?as={user}&channel={channel}")
    need_browser().expect(page.locator("#as-user")).to_have_value(user)


def _act_as(page: Any, user: str) -> None:
    page.select_option("#as-user", user)
    need_browser().expect(page.locator("#as-user")).to_have_value(user)


def _say(page: Any, text: str) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def _card(page: Any, action_id: str) -> Any:
    """The newest message whose buttons include `action_id`."""
    return page.locator(".message", has=page.locator(f"button[data-action-id='{action_id}']")).last


def _no_placeholders(page: Any) -> None:
    assert page.locator(".cant-render").count() == 0


def test_a_narrow_window_folds_the_sidebar_and_home_links_each_decided_card(demo: Demo, page: Any) -> None:
    expect = need_browser().expect
    page.set_viewport_size({"width": 760, "height": 900})
    _open(page, demo, REQUESTER, "C0PAYMENTS")
    sidebar, toggle = page.locator("#sidebar"), page.locator("#sidebar-toggle")
    expect(sidebar).to_be_hidden()  # folded away: the channel gets the width
    expect(toggle).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 760  # nothing runs off the side
    _say(page, "/countersign run refund Refund order 1005, the beans were stale")
    expect(page.locator(".message.ephemeral").last).to_contain_text("Started")
    _act_as(page, APPROVER)
    card = _card(page, "approve")
    expect(card).to_contain_text("order 1005")
    ts = card.get_attribute("data-ts")
    card.locator("button[data-action-id='approve']").click()
    page.locator(".overlay.confirm button.btn-primary").click()  # a refund is high risk: Approve asks first
    expect(page.locator(f".message[data-ts='{ts}']")).to_contain_text("Approved by @Avery")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(sidebar).to_be_visible()
    page.click(".side-item.app-home")
    expect(sidebar).to_be_hidden()  # choosing where to go folds it again
    row = page.locator(".home [data-block-id^='recent:']", has_text="order 1005")
    expect(row).to_contain_text("The refund of order 1005 (refund): ✅ Approved by @Avery")  # what it was, how it ended
    row.locator("a.permalink").click()  # and a link to its card, opened here
    expect(page.locator("#pane-title")).to_have_text("# payments")
    expect(page.locator("#messages .message.highlight")).to_have_attribute("data-ts", str(ts))
    card = page.locator(f"#messages .message[data-ts='{ts}']")
    card.locator("button.replies").click()  # a thread covers the channel rather than squeezing it
    thread = page.locator("#thread")
    expect(thread).to_contain_text("The refund of order 1005 succeeded")
    box = thread.bounding_box()
    assert box is not None and box["width"] >= 700
    page.click("#thread-close")
    _no_placeholders(page)


def test_another_origin_in_the_browser_cannot_post_for_anyone(demo: Demo, page: Any) -> None:
    """What any web page open in the same browser can send without a preflight: a `no-cors`
    text/plain POST. The other site is a page of another local origin (the app's own port:
    Chromium lets only loopback pages reach loopback at all)."""
    page.goto(demo.app_url + "/healthz")
    body = '{"user": "U0APPROVER", "channel": "C0APPROVALS", "text": "posted by another origin"}'
    script = "async ([url, body]) => (await fetch(url, {method: 'POST', mode: 'no-cors', body})).type"
    assert page.evaluate(script, [demo.url + "api/compose", body]) == "opaque"  # sent; the answer unread
    assert not [m for m in demo.emulator.messages("C0APPROVALS") if "another origin" in m.text]
    # Its own page, without the token, is refused too; the page itself (as app.js sends) works.
    _open(page, demo, REQUESTER, "C0APPROVALS")
    own = (
        "async (body) => (await fetch('/api/compose', "
        "{method: 'POST', body, headers: {'Content-Type': 'application/json'}})).status"
    )
    assert page.evaluate(own, body) == 403
    _say(page, "posted by the page itself")
    need_browser().expect(page.locator(".message").last).to_contain_text("posted by the page itself")
    assert not [m for m in demo.emulator.messages("C0APPROVALS") if "another origin" in m.text]


def test_untrusted_text_never_becomes_markup(demo: Demo, page: Any) -> None:
    expect = need_browser().expect
    _open(page, demo, REQUESTER, "C0APPROVALS")
    _say(page, '<img src=x onerror="window.pwned=1"> *bold* `code` and @countersign lookup order 1003')
    message = page.locator(f".message[data-user='{REQUESTER}']", has_text="onerror").last
    expect(message).to_contain_text('<img src=x onerror="window.pwned=1">')
    expect(message.locator("b")).to_have_text("bold")
    expect(message.locator(".mention")).to_have_text("@countersign")
    assert page.locator(".messages img").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(message.locator("button.replies")).to_be_visible()  # the app answered the mention in its thread


def _count_buttons(value: Any) -> int:
    if isinstance(value, dict):
        return (value.get("type") == "button") + sum(_count_buttons(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_buttons(v) for v in value)
    return 0


RENDER_ALL = """(all) => {
  const out = {};
  for (const [name, payload] of Object.entries(all)) {
    const ctx = { users: { U0REQUESTER: { name: "Riley" } }, usergroups: {}, inputs: [], onAction: () => {} };
    const node = BlockKit.renderBlocks(payload.blocks, ctx);
    out[name] = {
      placeholders: node.querySelectorAll(".cant-render").length,
      blocks: node.querySelectorAll(":scope > .block").length,
      buttons: node.querySelectorAll("button.btn").length,
      inputs: ctx.inputs.length,
    };
  }
  return out;
}"""


def test_every_payload_the_app_sends_renders_in_chromium(demo: Demo, page: Any) -> None:
    from tests.sandbox.payloads import payloads

    _open(page, demo, APPROVER, "C0APPROVALS")
    every = payloads()
    rendered = page.evaluate(RENDER_ALL, every)
    for name, payload in every.items():
        inputs = sum(1 for block in payload["blocks"] if block["type"] == "input")
        expected = {"placeholders": 0, "blocks": len(payload["blocks"]), "buttons": _count_buttons(payload["blocks"])}
        assert rendered[name] == {**expected, "inputs": inputs}, name


MRKDWN = """(cases) => cases.map((text) => {
  const ctx = { users: { U1: { name: "Avery" } }, usergroups: { S1: "leads" } };
  ctx.channelName = (id) => (id === "C1" ? "payments" : undefined);
  const node = Mrkdwn.render(text, ctx);
  return { text: node.textContent, html: node.innerHTML };
})"""


def test_mrkdwn_is_rendered_like_slack_and_never_as_markup(demo: Demo, page: Any) -> None:
    _open(page, demo, APPROVER, "C0APPROVALS")
    cases = {
        "<@U1> and <@U9|sam>": ("@Avery and @sam", '<span class="mention" data-user="U1">@Avery</span>'),
        "in <#C1> or <#C2|ops>": ("in #payments or #ops", 'class="channel-link"'),
        "&lt;b&gt;x&lt;/b&gt; &amp;amp;": ("<b>x</b> &amp;", "&lt;b&gt;x&lt;/b&gt; &amp;amp;"),
        "<!date^0^{date_num} {time}|a while ago>": ("1970-01-01 12:00 AM", 'class="date"'),
        "<!date^nope^{date}|the fallback>": ("the fallback", 'class="date"'),
        "*bold* _it_ ~gone~ `co*de*`": ("bold it gone co*de*", "<b>bold</b> <i>it</i> <s>gone</s>"),
        "snake_case_name and 2*3*4": ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        "```\n&lt;x&gt; *not bold*\n```": ("<x> *not bold*", '<pre class="code-block">&lt;x&gt; *not bold*</pre>'),
        ">quoted *line*\nnext": ("quoted linenext", "<blockquote>quoted <b>line</b></blockquote>next"),
        "<https://example.com/a?b=1|site> <javascript:alert(1)|click>": (
            "site click",
            'href="https://example.com/a?b=1"',
        ),
        ":white_check_mark: :not_an_emoji: <!here> <!subteam^S1>": ("✅ :not_an_emoji: @here @leads", "emoji"),
    }
    results = page.evaluate(MRKDWN, list(cases))
    for (text, (shown, markup)), result in zip(cases.items(), results, strict=True):
        assert result["text"] == shown, text
        assert markup in result["html"], (text, result["html"])
        assert "javascript:" not in result["html"] and "<script" not in result["html"]
