"""Forged and malformed input: hypothesis-generated requests at a real `countersign serve`
and at the demo page; none may get a 5xx, and none may change anything but the audit
ledger's refusal events.

The server is seeded first (tasks with pending actions from two teams, one `app_mention`
whose `event_id` is then replayed, one slash command whose exact bytes are kept), and the
demo page (`SandboxPage`) started in this process on a free port, in a workspace of its own.
Then `--shapes` requests (default 100) of each of issue #14's shapes are generated
(`chaos.fuzz_shapes` says how), each with the only answers it may get:

- **large**: a declared length over the 512 KiB limit, signed or not, at `/slack/events` and
  `/api/tasks`, sent as headers only: 413 (the other families' bodies over the limit count
  here too);
- **exponent**: signed Edit-modal submissions by real approvers (the card's params hash) and
  by strangers whose number field holds `1e700000`, `9`*5000, `-1E-999999`...: each answered
  within Slack's 3 s, measured per request (a later answer fails, even if it came);
- **deep**: JSON nested 10,000-100,000 deep in a signed `payload=` form, an event body
  (400), a modal's `private_metadata` (the form's error) and at `/api/tasks` with the bearer
  token (422);
- **surrogate**: `\ud800`-style escapes and `\u0000` in the text of mentions, slash commands,
  rejection reasons and clicks a requester or approver might send (refused, nothing changed)
  and of `/api/tasks` bodies (422);
- **replay**: the kept slash command sent again, and signed requests sent twice: 401
  `replayed request`; `replays accepted` counts the kept command's tasks in the database;
- **cross-origin**: demo page requests with a foreign `Origin`, a wrong `Host` (DNS
  rebinding), a `text/plain` body, or a missing or wrong page token: 403 or 415; `demo
  cross-origin accepted` counts the ones answered otherwise plus anything the page's
  workspace gained. One request of the page's own (right host and token) must be answered.

Then `--count` requests are generated, each one of:

- **auth**: any body, real approvals included, with a forged or missing signature, a
  signature over another body or with another secret, a stale, future or non-numeric
  timestamp;
- **malformed**: correctly signed `block_actions`, `view_submission`, slash commands and
  `event_callback` bodies with missing fields, wrong types, huge values (up to ~1 MB; a body
  over 512 KiB is refused with 413 from its declared length, so only its headers are sent), random
  unicode, unknown action ids, real pending actions with wrong block_ids, clicks by strangers,
  requesters and users of other teams, truncated bodies and wrong content types. What a
  listed approver may legitimately do (approve with the card's params hash, reject with a
  reason, acknowledge, stop a task, start a task) is always given one flaw first;
- **garbage**: correctly signed random bytes, text, forms and JSON.

Then `--api` requests (default 1,000) at the actions API (`chaos.fuzz_api` says how): wrong or
missing tokens (401), the second client's token on the env token's action (404) or a task type
it was not given (403), bodies with at least one flaw (422, over 64 KiB 413), out-of-range or
non-numeric `?wait=` (422), claims and results of the pending API action (409), wrong methods
(405) and ids (404): each must get exactly its answer.

Then the database must be as it was: the same number of tasks, actions, decisions, timers,
Slack events and outbox rows (the per-minute `audit.head` rows aside, which no request
causes), the seeded actions in the same state with the same params, no tool call, and new
audit events only of kinds `decision.refused` and `api.call` (every API call is audited).
Each malformed request whose fields the product reads were of the wrong shape (a command with
no `user_id`, a mention whose `user` is not text...) counts as `malformed`: it too must change nothing.

    .venv/bin/python -m chaos.fuzz_inputs [--count 10000] [--shapes 100] [--api 1000] [--backend sqlite|postgres]
        [--seed N] [--verbose]

Prints one summary line (new rows and wrong or late answers, if any, on stderr before it):
the requests per family and per shape with each shape's slowest answer, then the failures
(5xx, state changes, unanswered, wrong answers, late answers, replays accepted, demo
cross-origin accepted), and exits 1 on any of them.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine  # noqa: E402

from bot.sandbox.page import SandboxPage  # noqa: E402
from chaos.common import note  # noqa: E402
from chaos.fuzz_api import api_requests  # noqa: E402
from chaos.fuzz_page import demo_page, page_answers, workspace_size  # noqa: E402
from chaos.fuzz_requests import content, requests  # noqa: E402
from chaos.fuzz_sender import Sender, Tally, fuzz  # noqa: E402
from chaos.fuzz_shapes import SHAPES, SLACK_DEADLINE_S  # noqa: E402
from chaos.fuzz_state import Snapshot, new_rows, replays_accepted, seed_state, settled_snapshot  # noqa: E402
from chaos.fuzz_world import (  # noqa: E402
    ADMIN,
    ADMINS,
    ALICE,
    APPROVALS,
    APPROVERS,
    BOB,
    CONFIG,
    MALLORY,
    OTHER_USER,
    REQUESTER,
    SCRIPT,
    Aim,
    Seeded,
)
from chaos.stage import stage  # noqa: E402
from core.db import normalize_url  # noqa: E402

NAME = "fuzz"
SHAPE_COUNT = 100  # requests of each of issue #14's shapes: a fixed number, not a share of --count
API_COUNT = 1000  # requests at the actions API


def aim_at(seeded: Seeded, page: SandboxPage) -> Aim:
    assert seeded.kept is not None
    return Aim(
        actions=seeded.targets,
        approvers=APPROVERS,
        strangers=(MALLORY, OTHER_USER, REQUESTER),
        channel=APPROVALS,
        kept=seeded.kept,
        page_port=page.port,
        page_token=page.token,
        flawed=lambda draw, rnd: content(draw, rnd, seeded, legit_allowed=False)[:3],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="requests to send (default 10000)")
    shapes_help = f"requests of each of issue #14's shapes (default {SHAPE_COUNT})"
    parser.add_argument("--shapes", type=int, default=SHAPE_COUNT, help=shapes_help)
    parser.add_argument("--api", type=int, default=API_COUNT, help=f"actions API requests (default {API_COUNT})")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--threads", type=int, default=6, help="concurrent senders (default 6)")
    parser.add_argument("--verbose", action="store_true", help="answers per kind of request, on stderr")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    began = time.monotonic()
    tally = Tally()
    people = {REQUESTER: "requester", ALICE: "approver", BOB: "approver", MALLORY: "stranger"}
    with stage(
        NAME,
        backend=args.backend,
        logs=None,
        channels=[APPROVALS, ADMINS],
        users=[REQUESTER, ALICE, BOB, MALLORY, ADMIN, OTHER_USER],
        config=CONFIG,
        script=SCRIPT,
    ) as world:
        reader = create_engine(normalize_url(world.url))
        world.on_close(reader.dispose)
        server = world.serve(NAME)
        with demo_page(server.events_url, APPROVALS, people) as (page, page_slack):
            seeded = seed_state(server.url, world.slack, reader, [server])
            watched = sorted([*seeded.pending, seeded.api_action])
            before = Snapshot.take(reader, watched)
            page_before, page_up = workspace_size(page_slack), page_answers(page)
            sender = Sender(server.url, tally, threads=args.threads, page_port=page.port)
            try:
                # The shapes first: the kept command's replays must come within Slack's 5 minutes.
                aim = aim_at(seeded, page)
                for offset, shape in enumerate(SHAPES.values()):
                    fuzz(shape(aim), args.shapes, seed + offset * 7919, sender)
                fuzz(requests(seeded), args.count, seed, sender)
                fuzz(api_requests(seeded), args.api, seed + 104729, sender)
            finally:
                sender.close()
            after = settled_snapshot(reader, watched)
            evidence = new_rows(reader, before) if before.changes(after) else []
            replayed = replays_accepted(reader)
            page_changes = workspace_size(page_slack) - page_before
            alive = server.alive()
            log_tail = server.output(2000)
    changes = before.changes(after)
    refusals = after.audit_kinds["decision.refused"] - before.audit_kinds.get("decision.refused", 0)
    cross_origin = tally.accepted["cross-origin"] + abs(page_changes)
    problems = (
        [f"state change: {change}" for change in changes]
        + evidence
        + [f"5xx: {sample}" for sample in tally.server_errors[:10]]
        + [f"no answer: {sample}" for sample in tally.unanswered[:10]]
        + [f"wrong answer: {sample}" for sample in tally.wrong_answers[:10]]
        + [f"answered after {SLACK_DEADLINE_S:.0f} s: {sample}" for sample in tally.late[:10]]
        + ([f"the kept command's replays started {replayed} more tasks"] if replayed else [])
        + ([f"the demo page's workspace changed by {page_changes}"] if page_changes else [])
        + ([] if page_up else ["the demo page did not answer its own request"])
        + ([] if alive else [f"the server died: {log_tail}"])
    )
    for problem in problems:
        note(NAME, problem[:2000])
    if args.verbose:
        for sample in tally.unsigned_accepted[:5]:
            note(NAME, f"forged request answered 2xx: {sample[:600]}")
        for kind, count in sorted(tally.by_shape.items()):
            note(NAME, f"{count:6d} {kind}")
    # A forged request answered 2xx but refused all the same (it changed nothing) is reported, not failed.
    passed = not (
        changes
        or tally.server_errors
        or tally.unanswered
        or tally.wrong_answers
        or tally.late
        or replayed
        or cross_origin
        or not page_up
        or not alive
    )
    families = ", ".join(f"{name} {count}" for name, count in sorted(tally.families.items()) if ":" in name)
    statuses = ", ".join(f"{name}={count}" for name, count in sorted(tally.statuses.items()))
    shapes = ", ".join(f"{name} {tally.shapes[name]} (slowest {tally.slowest.get(name, 0.0):.1f} s)" for name in SHAPES)
    print(
        f"{NAME}: {tally.sent} requests ({families}; {tally.huge} over 100 kB; shapes: {shapes}), "
        f"5xx={len(tally.server_errors)}, state changes={len(changes)}, unanswered={len(tally.unanswered)}, "
        f"wrong answers={len(tally.wrong_answers)}, late answers={len(tally.late)}, replays accepted={replayed}, "
        f"demo cross-origin accepted={cross_origin}, forged answered 2xx={len(tally.unsigned_accepted)}, "
        f"answers {statuses}, audit refusals={refusals}, seed {seed}, {time.monotonic() - began:.0f} s, "
        f"{'PASS' if passed else 'FAIL'}",
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
