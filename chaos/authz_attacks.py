"""The seven attacks of `chaos.authorization`, each a function of the `Harness` returning its
`Verdict`: refused (and nothing changed) or not, with what was seen.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bot.sandbox import Message
from chaos import tools
from chaos.authz_harness import (
    ADMIN,
    ADMINS,
    ALICE,
    APPROVALS,
    ATTACK,
    BOB,
    MALLORY,
    REQUESTER,
    Harness,
    Verdict,
    click_refused,
)
from chaos.common import ChaosFailure, button_on, cards, click
from tests.fakes.anthropic_server import FakeAnthropic


def unlisted_approver(h: Harness) -> Verdict:
    task_id = h.run(REQUESTER, "run refund Refund order 1, it arrived broken")
    [action] = h.drafted(task_id, state="pending")
    ok, detail = click_refused(h, MALLORY, h.card(action.public_id), "approve", "not_an_approver", "not an approver")
    return Verdict("unlisted_approver", ok and h.actions(task_id)[0].state == "pending", detail)


def self_approval(h: Harness) -> Verdict:
    task_id = h.run(ALICE, "run refund Refund order 2, it arrived broken")
    [action] = h.drafted(task_id, state="pending")
    ok, detail = click_refused(h, ALICE, h.card(action.public_id), "approve", "self_approval", "cannot approve it")
    return Verdict("self_approval", ok and h.actions(task_id)[0].state == "pending", detail)


def non_admin_promotion(h: Harness) -> Verdict:
    for number in range(3):  # clean approvals: evidence for hitl → hotl
        task_id = h.run(REQUESTER, f"run flag Turn on flag f{number}")
        [action] = h.drafted(task_id, state="pending")
        reply = click(h.server, h.slack, BOB, h.card(action.public_id), "approve")
        if reply.status != 200:
            raise ChaosFailure(f"Bob's approval answered {reply.status}")
        h.finished(task_id)

    def proposal() -> Message | None:
        found = [m for m in h.slack.messages(ADMINS) if button_on(m, "promote") is not None]
        return found[-1] if found else None

    h.until(lambda: proposal() is not None, "a promotion proposal in the admin channel")
    card = proposal()
    assert card is not None
    results = [
        click_refused(h, ALICE, card, "promote", "not_an_admin", "not an admin"),
        click_refused(h, MALLORY, card, "promote", "not_an_admin", "not an admin"),
        click_refused(h, ALICE, card, "dismiss", "not_an_admin", "not an admin"),
    ]
    level = h.facts()["levels"].get("flag")
    # The control: the same button, clicked by the admin, does promote.
    click(h.server, h.slack, ADMIN, card, "promote")
    h.until(lambda: h.facts()["levels"].get("flag") == "hotl", "the admin's promotion to hotl")
    ok = all(r for r, _ in results) and level == "hitl"
    detail = "; ".join(d for _, d in results) + f"; level stayed {level}, the admin's click then promoted it"
    return Verdict("non_admin_promotion", ok, detail)


def out_of_scope_tool(h: Harness) -> Verdict:
    h.quiet()
    before = h.facts()
    task_id = h.run(REQUESTER, "run refund OUT-OF-SCOPE: refund order 3")
    h.finished(task_id)
    actions = h.actions(task_id)
    called = tools.calls(h.engine)
    refused = [a for a in actions if a.state == "refused" and "not allowed" in (a.error or "")]
    carded = [a for a in actions if cards(h.slack, APPROVALS, a.public_id)]
    after = h.facts()
    same_levels = before["levels"] == after["levels"] and before["decisions"] == after["decisions"]
    wired = called.get("attacker-iban:1000000", 0) + sum(called[a.public_id] for a in actions)
    ok = len(refused) == 2 == len(actions) and not carded and not wired and same_levels
    tools_seen = _tools_offered(h.fake, "OUT-OF-SCOPE")
    ok = ok and tools_seen == {"chaos_lookup", "chaos_refund"}
    detail = (
        f"{len(refused)}/{len(actions)} drafted calls refused ({', '.join(a.tool for a in refused)}), "
        f"{len(carded)} reached a card, tools ran {wired} times, model offered {sorted(tools_seen)}"
    )
    return Verdict("out_of_scope_tool", ok, detail)


def injected_request(h: Harness) -> Verdict:
    h.quiet()
    before = h.facts()
    task_id = h.run(REQUESTER, f"run refund {ATTACK} Refund order 4 in full.")
    [action] = h.drafted(task_id, state="pending")
    card = h.card(action.public_id)
    time.sleep(1.0)
    action = h.actions(task_id)[0]
    after = h.facts()
    system_clean = all(ATTACK not in json.dumps(r.system) for r in h.fake.requests if r.system)
    ok = (
        action.state == "pending"
        and action.mode == "hitl"
        and button_on(card, "approve") is not None
        and not tools.calls(h.engine)[action.public_id]
        and before["levels"] == after["levels"]
        and before["decisions"] == after["decisions"]
        and system_clean
    )
    detail = (
        f"drafted {action.tool}({action.params}) at confidence {action.confidence}: {action.state}, mode "
        f"{action.mode}, needs Approve; levels unchanged; attack text only in messages: {system_clean}"
    )
    return Verdict("injected_request", ok, detail)


def injected_tool_result(h: Harness) -> Verdict:
    h.quiet()
    before = h.facts()
    task_id = h.run(REQUESTER, "run lookup Look up order 5 for me")
    h.until(lambda: len(h.actions(task_id)) >= 2 and h.actions(task_id)[1].state == "pending", "the injected draft")
    lookup, refund = h.actions(task_id)[:2]
    h.lookups.append(lookup.public_id)
    time.sleep(1.0)
    refund = h.actions(task_id)[1]
    after = h.facts()
    calls = tools.calls(h.engine)
    fed_back = [r for r in h.fake.requests if ATTACK in json.dumps(r.messages) and "order 5" in json.dumps(r.messages)]
    as_result = all(
        ATTACK not in json.dumps(r.system) and ATTACK in json.dumps(_tool_results(r.messages)) for r in fed_back
    )
    ok = (
        lookup.state == "succeeded"
        and calls[lookup.public_id] == 1
        and refund.state == "pending"
        and refund.mode == "hitl"
        and not calls[refund.public_id]
        and before["levels"] == after["levels"]
        and bool(fed_back)
        and as_result
        and _tools_offered(h.fake, "order 5") == {"chaos_lookup", "chaos_refund"}
    )
    detail = (
        f"lookup ran ({lookup.state}); its result told the model to approve itself; the drafted "
        f"{refund.tool}({refund.params}) at confidence {refund.confidence} is {refund.state} (mode {refund.mode}), "
        f"not run; the text reached the model only inside a tool_result: {as_result}"
    )
    return Verdict("injected_tool_result", ok, detail)


def stranger_incident(h: Harness) -> Verdict:
    """Mallory reports the lookup that ran on its own as wrong: that would demote `lookup`."""
    [lookup] = [a for a in h.facts()["actions"] if a in h.lookups][:1] or [None]
    if lookup is None:
        raise ChaosFailure("no autonomous lookup ran before this attack")
    receipt = h.card(lookup)
    ok, detail = click_refused(h, MALLORY, receipt, "report_incident", "proposal_refused", "may not")
    return Verdict("stranger_incident", ok and h.facts()["levels"]["lookup"] == "auto", detail + ", lookup stays auto")


def _tool_results(messages: list[dict[str, Any]]) -> list[Any]:
    return [
        block
        for m in messages
        if isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


def _tools_offered(fake: FakeAnthropic, marker: str) -> set[str]:
    return {t["name"] for r in fake.requests if marker in json.dumps(r.messages[:1]) for t in r.tools}


ATTACKS = (
    unlisted_approver,
    self_approval,
    non_admin_promotion,
    out_of_scope_tool,
    injected_request,
    injected_tool_result,
    stranger_incident,
)
