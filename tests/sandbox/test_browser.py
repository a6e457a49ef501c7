"""The demo in a real browser, as a newcomer clicks through it: a refund from the composer,
approved by the approver (the card updates in place, the result lands in its thread), a
flag change vetoed inside its window, a reject with its reason modal, the App Home. Every
click and submission reaches the app as a signed Slack request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.demo import Demo
from tests.sandbox.browser import need_browser
from tests.sandbox.harness import running_demo

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


def test_refund_approved_in_the_browser(demo: Demo, page: Any, shots: Path) -> None:
    expect = need_browser().expect
    _open(page, demo, REQUESTER, "C0PAYMENTS")
    _say(page, "/countersign run refund Refund order 1001, it arrived broken")
    expect(page.locator(".message.ephemeral").last).to_contain_text("Started")
    expect(page.locator(".message.ephemeral").last).to_contain_text("Only visible to you")

    _act_as(page, APPROVER)
    page.click(".side-item.channel-payments")
    card = _card(page, "approve")
    expect(card).to_contain_text("Refund order 1001, it arrived broken")
    expect(card).to_contain_text("issue_refund")
    expect(card).to_contain_text("@Riley")  # <@U0REQUESTER> rendered as a name
    expect(card.locator("button.btn-primary")).to_have_text("Approve")
    expect(card.locator("button.btn-danger")).to_have_text("Reject")
    _no_placeholders(page)
    page.screenshot(path=str(shots / "card.png"))

    ts = card.get_attribute("data-ts")
    card.locator("button[data-action-id='approve']").click()
    # A refund is high risk: Approve asks first, naming the consequence.
    confirm = page.locator(".overlay.confirm")
    expect(confirm).to_contain_text("The refund of order 1001: Amount cents 24.00 (2,400 cents). Approve it?")
    confirm.locator("button.btn-primary").click()
    decided = page.locator(f".message[data-ts='{ts}']")
    expect(decided).to_contain_text("Approved by @Avery")
    expect(decided).to_contain_text("Succeeded")
    expect(decided).to_contain_text("(edited)")
    assert decided.locator("button").filter(has_text="Approve").count() == 0

    decided.locator("button.replies").click()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("The refund of order 1001 succeeded")
    expect(thread.locator(".code-block").last).to_contain_text('"refunded_cents": 2400')
    _no_placeholders(page)
    page.screenshot(path=str(shots / "approved.png"))


def test_flag_change_vetoed_inside_its_window(demo: Demo, page: Any, shots: Path) -> None:
    expect = need_browser().expect
    _open(page, demo, REQUESTER, "C0APPROVALS")
    _say(page, "/countersign run feature-flag Turn on new-checkout for everyone")
    expect(page.locator(".message.ephemeral").last).to_contain_text("Started")

    _act_as(page, APPROVER)
    card = _card(page, "veto")
    expect(card).to_contain_text("unless vetoed")
    expect(card).to_contain_text("toggle_feature_flag")
    expect(card).to_contain_text("new-checkout")
    page.screenshot(path=str(shots / "veto-window.png"))

    ts = card.get_attribute("data-ts")
    card.locator("button[data-action-id='veto']").click()
    vetoed = page.locator(f".message[data-ts='{ts}']")
    expect(vetoed).to_contain_text("Vetoed by @Avery")
    assert vetoed.locator("button[data-action-id='veto']").count() == 0
    _no_placeholders(page)
    page.screenshot(path=str(shots / "vetoed.png"))


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


def test_reject_asks_for_a_reason_in_a_modal(demo: Demo, page: Any, shots: Path) -> None:
    expect = need_browser().expect
    _open(page, demo, REQUESTER, "C0PAYMENTS")
    _say(page, "/countersign run refund Refund order 1004 please")
    expect(page.locator(".message.ephemeral").last).to_contain_text("Started")

    _act_as(page, APPROVER)
    card = _card(page, "reject")
    expect(card).to_contain_text("order 1004")
    ts = card.get_attribute("data-ts")
    card.locator("button[data-action-id='reject']").click()
    modal = page.locator(".overlay .modal")
    expect(modal.locator(".modal-title")).to_have_text("Reject action")
    modal.locator("button.btn-primary").click()  # empty: Slack's own check, nothing is sent
    expect(modal.locator(".input-error")).to_have_text("Please complete this required field.")
    modal.locator("textarea").fill("   ")
    modal.locator("button.btn-primary").click()  # blank: the app answers with an inline error
    expect(modal.locator(".input-error")).to_contain_text("Say why")
    modal.locator("textarea").fill("The customer already got a replacement <b>mug</b>.")
    page.screenshot(path=str(shots / "reject-modal.png"))
    modal.locator("button.btn-primary").click()
    expect(page.locator(".overlay")).to_have_count(0)
    rejected = page.locator(f".message[data-ts='{ts}']")
    expect(rejected).to_contain_text("Rejected by @Avery")
    expect(rejected).to_contain_text("already got a replacement <b>mug</b>.")  # shown as text, not markup
    assert rejected.locator("b", has_text="mug").count() == 0


FAST_ESCALATION = "[{after: 2s, notify: approvers}, {after: 30m, then: expire}]"


def test_an_escalation_ping_arrives_as_a_dm_and_acknowledge_answers_it(
    tmp_path: Path, browser_context: Any, shots: Path
) -> None:
    expect = need_browser().expect
    # The demo's reminder comes after 20 s; the same chain, two seconds in.
    with running_demo(tmp_path, COUNTERSIGN__TASK_TYPES__REFUND__ESCALATION=FAST_ESCALATION) as quick:
        page = browser_context.new_page()
        _open(page, quick, REQUESTER, "C0PAYMENTS")
        _say(page, "/countersign run refund Refund order 1006: it never arrived")
        expect(page.locator(".message.ephemeral").last).to_contain_text("Started")
        _act_as(page, APPROVER)
        dm = page.locator(".side-item.dm")
        expect(dm.locator(".badge")).to_have_text("1")  # unread, as Slack shows a new DM
        dm.click()
        reminder = page.locator(".message", has=page.locator("button[data-action-id='acknowledge']")).last
        expect(reminder).to_contain_text("is waiting for a decision")
        expect(reminder).to_contain_text("@Riley")
        page.screenshot(path=str(shots / "reminder.png"))
        reminder.locator("button[data-action-id='acknowledge']").click()
        page.click(".side-item.channel-payments")
        card = _card(page, "approve")
        expect(card).to_contain_text("Acknowledged by @Avery")
        card.locator("button.replies").click()
        expect(page.locator("#thread")).to_contain_text("@Avery is on it.")
        _no_placeholders(page)
        page.close()


def test_app_home_and_direct_messages(demo: Demo, page: Any, shots: Path) -> None:
    expect = need_browser().expect
    _open(page, demo, REQUESTER, "C0PAYMENTS")
    _say(page, "/countersign run refund Refund order 1002: wrong grinder")
    expect(page.locator(".message.ephemeral").last).to_contain_text("Started")
    # The Home is drawn when opened: wait until the agent's draft waits for approval.
    expect(_card(page, "approve")).to_contain_text("wrong grinder", timeout=30_000)
    _act_as(page, APPROVER)
    page.click(".side-item.app-home")
    home = page.locator(".home")
    expect(home).to_contain_text("Waiting for you")
    expect(home).to_contain_text("wrong grinder")
    expect(home).to_contain_text("Autonomy levels")
    expect(home.locator("button[data-action-id='approve']").first).to_be_visible()
    _no_placeholders(page)
    page.screenshot(path=str(shots / "home.png"))


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
