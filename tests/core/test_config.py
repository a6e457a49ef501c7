"""The config loader: a valid file loads; each kind of mistake is reported with key path, line
(or env variable) and the bad value."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from core.config import AutonomyLevel, Config, check_tool_names, highest, load_config, lowest
from core.durations import format_duration, parse_duration
from core.errors import ConfigError
from core.settings import Settings, connect_problems

EXAMPLE = """\
slack:
  approvals_channel: C0APPROVALS
  admin_channel: C0ADMINS                    # promotion proposals, alerts, audit heads
  admins: [U0ADMIN, "@platform-leads"]       # may change autonomy levels
model: {default: claude-sonnet-4-6, router: claude-haiku-4-5}
tools: {modules: [examples.shop_tools]}
task_types:
  refund:
    description: Refund a customer order
    instructions: You handle refund requests for the shop...
    tools: [lookup_order, issue_refund]
    autonomy: hitl                             # hitl | hotl | auto
    channel: C0PAYMENTS                        # optional; else slack.approvals_channel
    approvers: ["@payments-leads", U0456]      # users or user groups
    quorum: 1
    veto_window: 10m
    confidence_threshold: 0.7
    budget: {max_steps: 8, max_tokens: 50000, max_cost_usd: 0.50}
    escalation:
      - {after: 15m, notify: approvers}
      - {after: 45m, notify: ["@payments-oncall"]}
      - {after: 4h, then: expire}
    graduation:                                # evidence rules for hitl→hotl; all optional
      ceiling: auto                            # highest level this type may reach
      min_samples: 100                         # decided actions in the window
      min_days: 14
      min_approvers: 2                         # distinct people behind the evidence
      target: 0.90                             # Wilson 95% lower bound of the clean rate
      max_reject_rate: 0.03
      min_read_time: 5s                        # faster approvals count, but not as clean
      review_share: 0.05                       # share of hotl/auto runs sent for review
      cooldown: 7d                             # after a dismissed proposal
      probation: 10                            # runs after a promotion in which one veto
                                               # or failure demotes at once
      demote_window: 50                        # once this many outcomes exist, a Wilson
      demote_below: 0.80                       # lower bound under this demotes one level
"""

MINIMAL = """\
slack:
  approvals_channel: C0APPROVALS
task_types:
  refund:
    tools: [issue_refund]
    approvers: [U0456]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "countersign.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`, so tests don't hard-code numbers."""
    return next(n for n, line in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in line)


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return caught.value.problems


def only_problem(path: Path, environ: dict[str, str] | None = None) -> str:
    problems = problems_of(path, environ)
    assert len(problems) == 1, problems
    return problems[0]


def test_design_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE), {})

    refund = config.task_types["refund"]
    assert config.slack.admins == ["U0ADMIN", "@platform-leads"]
    assert config.model.router == "claude-haiku-4-5"
    assert config.tools.modules == ["examples.shop_tools"]
    assert refund.autonomy is AutonomyLevel.HITL
    assert refund.veto_window == timedelta(minutes=10)
    assert [step.after for step in refund.escalation] == [
        timedelta(minutes=15),
        timedelta(minutes=45),
        timedelta(hours=4),
    ]
    assert [step.notify for step in refund.escalation] == ["approvers", ["@payments-oncall"], None]
    assert refund.escalation[-1].then == "expire"
    assert refund.budget.max_cost_usd == 0.5
    assert refund.graduation.min_read_time == timedelta(seconds=5)
    assert refund.graduation.cooldown == timedelta(days=7)
    assert config.channel_for("refund") == "C0PAYMENTS"
    assert config.proposals_channel == "C0ADMINS"


def test_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})

    refund = config.task_types["refund"]
    assert config.model.default == "claude-sonnet-4-6"
    assert (refund.autonomy, refund.quorum, refund.veto_window) == ("hitl", 1, timedelta(minutes=10))
    assert refund.confidence_threshold == 0.7
    assert (refund.budget.max_steps, refund.budget.max_tokens) == (8, 50_000)
    graduation = refund.graduation
    assert (graduation.ceiling, graduation.min_samples, graduation.min_days) == ("auto", 100, 14)
    assert (graduation.target, graduation.demote_window, graduation.demote_below) == (0.90, 50, 0.80)
    assert config.channel_for("refund") == "C0APPROVALS"
    assert config.audit.publish_every == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0s", "publish the head at most once a second: '0s'"),
        ("500ms", "not a duration: '500ms'"),
        ("-1m", "cannot be negative: '-1m'"),
    ],
)
def test_the_audit_head_interval_is_a_duration_of_a_second_or_more(tmp_path: Path, value: str, expected: str) -> None:
    assert load_config(write(tmp_path, MINIMAL + "audit: {publish_every: 30s}\n"), {}).audit.publish_every == timedelta(
        seconds=30
    )
    text = MINIMAL + f"audit:\n  publish_every: {value}\n"
    problem = only_problem(write(tmp_path, text))
    assert problem.startswith(f"audit.publish_every (line {line_of(text, 'publish_every')}): ")
    assert expected in problem


def test_unknown_key_names_path_and_line(tmp_path: Path) -> None:
    text = EXAMPLE.replace("    quorum: 1\n", "    quorum: 1\n    colour: red\n")

    problem = only_problem(write(tmp_path, text))

    assert problem == f"task_types.refund.colour (line {line_of(text, 'colour')}): unknown key"


def test_bad_duration_names_path_line_and_value(tmp_path: Path) -> None:
    text = EXAMPLE.replace("veto_window: 10m", "veto_window: 10 minutes")

    problem = only_problem(write(tmp_path, text))

    assert problem == (
        f"task_types.refund.veto_window (line {line_of(text, 'veto_window')}): "
        "not a duration: '10 minutes' (use forms like 30s, 15m, 2h, 7d)"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = EXAMPLE.replace("veto_window: 10m", "veto_window: soon").replace("quorum: 1", "quorum: 0")

    problems = problems_of(write(tmp_path, text))

    assert len(problems) == 2
    assert f"task_types.refund.quorum (line {line_of(text, 'quorum')}): " in problems[0]
    assert problems[0].endswith("got 0")
    assert "veto_window" in problems[1]
    assert "'soon'" in problems[1]


def test_unknown_tool_is_named_with_line_and_known_tools(tmp_path: Path) -> None:
    text = EXAMPLE.replace("[lookup_order, issue_refund]", "[lookup_order, isue_refund]")
    config = load_config(write(tmp_path, text), {})

    problems = check_tool_names(config, ["lookup_order", "issue_refund"])

    assert problems == [
        f"task_types.refund.tools[1] (line {line_of(text, 'isue_refund')}): unknown tool 'isue_refund' "
        "(known: issue_refund, lookup_order)"
    ]
    assert check_tool_names(load_config(write(tmp_path, EXAMPLE), {}), {"lookup_order", "issue_refund"}) == []


@pytest.mark.parametrize("autonomy", ["hitl", "hotl"])
def test_supervised_task_type_needs_an_approver(tmp_path: Path, autonomy: str) -> None:
    text = MINIMAL.replace("approvers: [U0456]", f"autonomy: {autonomy}")

    problem = only_problem(write(tmp_path, text))

    # No `approvers` key in the file, so the line is the task type's own.
    assert problem == (
        f"task_types.refund.approvers (line {line_of(text, 'refund:')}): "
        f"a '{autonomy}' task type needs at least one approver: []"
    )


def test_autonomous_task_type_may_have_no_approvers(tmp_path: Path) -> None:
    text = MINIMAL.replace("approvers: [U0456]", "autonomy: auto")

    assert load_config(write(tmp_path, text), {}).task_types["refund"].approvers == []


def test_quorum_above_listed_users_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("approvers: [U0456]", "approvers: [U0456, W0789]\n    quorum: 3")

    problem = only_problem(write(tmp_path, text))

    assert problem == (
        f"task_types.refund.quorum (line {line_of(text, 'quorum')}): more than the 2 approver(s) listed: 3"
    )


def test_quorum_is_not_bounded_when_a_group_approves(tmp_path: Path) -> None:
    text = MINIMAL.replace("approvers: [U0456]", 'approvers: [U0456, "@payments"]\n    quorum: 3')

    assert load_config(write(tmp_path, text), {}).task_types["refund"].quorum == 3


@pytest.mark.parametrize("entry", ["bob", "u0456", "#payments", "@", "U1"])
def test_bad_approver_is_named(tmp_path: Path, entry: str) -> None:
    text = MINIMAL.replace("approvers: [U0456]", f'approvers: [U0456, "{entry}"]')

    problem = only_problem(write(tmp_path, text))

    assert problem.startswith(f"task_types.refund.approvers[1] (line {line_of(text, 'approvers')}): ")
    assert problem.endswith(f"not a Slack user id (U…/W…) or user-group handle (@…): {entry!r}")


def test_escalation_steps_must_get_later(tmp_path: Path) -> None:
    text = EXAMPLE.replace("{after: 45m, notify:", "{after: 10m, notify:")

    problem = only_problem(write(tmp_path, text))

    assert problem == (
        f"task_types.refund.escalation[1].after (line {line_of(text, 'after: 10m')}): "
        "must be later than the step before it (15m), got 10m"
    )


def test_expire_must_be_the_last_step(tmp_path: Path) -> None:
    text = EXAMPLE.replace("{after: 15m, notify: approvers}", "{after: 15m, then: expire}")

    problem = only_problem(write(tmp_path, text))

    assert problem == (
        f"task_types.refund.escalation[0].then (line {line_of(text, 'after: 15m')}): "
        "'expire' ends the chain, so it must be the last step"
    )


def test_step_needs_exactly_one_action(tmp_path: Path) -> None:
    text = EXAMPLE.replace("{after: 4h, then: expire}", "{after: 4h, then: expire, notify: admins}")

    problem = only_problem(write(tmp_path, text))

    assert problem.startswith(f"task_types.refund.escalation[2] (line {line_of(text, 'after: 4h')}): ")
    assert "exactly one of 'notify' or 'then', got both" in problem


def test_bad_notify_target_is_named(tmp_path: Path) -> None:
    text = EXAMPLE.replace('notify: ["@payments-oncall"]', "notify: everyone")

    problem = only_problem(write(tmp_path, text))

    assert problem.startswith(f"task_types.refund.escalation[1].notify (line {line_of(text, 'everyone')}): ")
    assert problem.endswith("'everyone'")


def test_task_type_needs_a_channel(tmp_path: Path) -> None:
    text = MINIMAL.replace("  approvals_channel: C0APPROVALS\n", "  admin_channel: C0ADMINS\n")

    problem = only_problem(write(tmp_path, text))

    assert problem.startswith(f"task_types.refund.channel (line {line_of(text, 'refund:')}): no channel")


def test_graduation_ceiling_cannot_be_below_start(tmp_path: Path) -> None:
    text = MINIMAL + "    autonomy: hotl\n    graduation: {ceiling: hitl}\n"

    problem = only_problem(write(tmp_path, text))

    assert problem == (
        f"task_types.refund.graduation.ceiling (line {line_of(text, 'ceiling')}): "
        "below the starting autonomy 'hotl': 'hitl'"
    )


def test_bad_task_type_name(tmp_path: Path) -> None:
    text = MINIMAL.replace("  refund:", "  Refund Now:")

    problem = only_problem(write(tmp_path, text))

    assert problem.startswith(f"task_types.Refund Now (line {line_of(text, 'Refund Now')}): ")
    assert problem.endswith("'Refund Now'")


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "    approvers: [U0999]\n"

    problem = only_problem(write(tmp_path, text))

    assert problem == (
        f"task_types.refund.approvers (line {line_of(text, 'U0999')}): duplicate key "
        f"(first at line {line_of(text, 'U0456')}): 'approvers'"
    )


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("tools: [issue_refund]", "tools: [issue_refund")
    path = write(tmp_path, text)

    problem = only_problem(path)

    assert problem.startswith(f"{path} (line ")
    assert "not valid YAML" in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the config file is empty"),
        ("# nothing\n", "the config file is empty"),
        ("- a\n- b\n", "(line 1): the top level must be a mapping"),
        ("hello\n", "got str: 'hello'"),
    ],
)
def test_empty_or_non_mapping_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)

    problem = only_problem(path)

    assert problem.startswith(str(path))
    assert expected in problem


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"

    assert only_problem(missing) == f"{missing}: no such config file (set COUNTERSIGN_CONFIG)"


def test_env_overrides_yaml_values(tmp_path: Path) -> None:
    text = MINIMAL.replace("  refund:", "  restart-service:").replace("U0456]", "U0456, U0789]")
    environ = {
        "COUNTERSIGN__SLACK__APPROVALS_CHANNEL": "C123",
        "COUNTERSIGN__TASK_TYPES__RESTART_SERVICE__QUORUM": "2",
        "COUNTERSIGN__TASK_TYPES__RESTART_SERVICE__TOOLS": "[a, b]",
        "COUNTERSIGN__MODEL__DEFAULT": "claude-opus-4-1",
        "UNRELATED": "x",
    }

    config = load_config(write(tmp_path, text), environ)

    task_type = config.task_types["restart-service"]
    assert config.slack.approvals_channel == "C123"
    assert (task_type.quorum, task_type.tools) == (2, ["a", "b"])
    assert config.model.default == "claude-opus-4-1"


def test_env_override_error_names_the_variable(tmp_path: Path) -> None:
    environ = {"COUNTERSIGN__TASK_TYPES__REFUND__VETO_WINDOW": "10 minutes"}

    problem = only_problem(write(tmp_path, MINIMAL), environ)

    assert problem == (
        "task_types.refund.veto_window (env COUNTERSIGN__TASK_TYPES__REFUND__VETO_WINDOW): "
        "not a duration: '10 minutes' (use forms like 30s, 15m, 2h, 7d)"
    )


def test_env_replaced_subtree_is_not_blamed_on_old_lines(tmp_path: Path) -> None:
    environ = {"COUNTERSIGN__TASK_TYPES__REFUND__APPROVERS": "[U0456, bob]"}

    problem = only_problem(write(tmp_path, MINIMAL), environ)

    variable = "COUNTERSIGN__TASK_TYPES__REFUND__APPROVERS"
    assert problem.startswith(f"task_types.refund.approvers[1] (env {variable}): ")
    assert problem.endswith("'bob'")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("COUNTERSIGN__SLACK__ADMINS", "[a, b", "not a YAML value: '[a, b'"),
        ("COUNTERSIGN__SLACK__APPROVALS_CHANNEL__X", "1", "slack.approvals_channel is not a mapping"),
        ("COUNTERSIGN____X", "1", "not a config path"),
    ],
)
def test_malformed_env_override(tmp_path: Path, name: str, value: str, expected: str) -> None:
    problem = only_problem(write(tmp_path, MINIMAL), {name: value})

    assert problem.startswith(f"{name}: ")
    assert expected in problem


def test_yaml_anchors_are_not_changed_through_an_alias(tmp_path: Path) -> None:
    text = MINIMAL + "  other: &shared\n    tools: [a]\n    approvers: [U0456]\n  third: *shared\n"
    environ = {"COUNTERSIGN__TASK_TYPES__OTHER__QUORUM": "1", "COUNTERSIGN__TASK_TYPES__THIRD__TOOLS": "[b]"}

    config = load_config(write(tmp_path, text), environ)

    assert (config.task_types["other"].tools, config.task_types["third"].tools) == (["a"], ["b"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(minutes=90)),
        ("1d2h3m4s", timedelta(1, 7384)),
        ("1.5h", timedelta(minutes=90)),
        (" 1h 30m ", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        ("0", timedelta(0)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (2.5, timedelta(seconds=2.5)),
        (timedelta(hours=1), timedelta(hours=1)),
    ],
)
def test_parse_duration_accepts(text: str | int | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a duration: ''"),
        ("15 minutes", "not a duration: '15 minutes'"),
        ("1x", "not a duration: '1x'"),
        ("30m1h", "not a duration: '30m1h'"),
        ("h", "not a duration: 'h'"),
        ("1h1h", "not a duration: '1h1h'"),
        ("-5m", "cannot be negative: '-5m'"),
        ("-3", "cannot be negative: '-3'"),
        (-1, "cannot be negative: -1"),
        (True, "not a duration: True"),
        (float("nan"), "not a duration: nan"),
    ],
)
def test_parse_duration_refuses(text: str | int | float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=7), "7d"),
        (timedelta(seconds=2.5), "2.5s"),
    ],
)
def test_format_duration_round_trips(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected
    assert parse_duration(expected) == value


def test_autonomy_levels_order_by_freedom() -> None:
    hitl, hotl, auto = AutonomyLevel.HITL, AutonomyLevel.HOTL, AutonomyLevel.AUTO

    assert sorted([auto, hitl, hotl]) == [hitl, hotl, auto]
    assert min(auto, hotl) is hotl
    assert max(hitl, hotl) is hotl
    assert lowest(auto, hotl, auto) is hotl
    assert highest(hitl, auto) is auto
    assert hitl < "auto"
    assert auto >= "hotl"
    assert [level.rank for level in AutonomyLevel] == [0, 1, 2]


def test_config_can_be_built_in_code() -> None:
    config = Config.model_validate(
        {"slack": {"approvals_channel": "C1"}, "task_types": {"t": {"tools": ["x"], "autonomy": "auto"}}}
    )

    assert config.channel_for("t") == "C1"
    assert config.where(("task_types", "t")) == ""


def test_settings_read_env_dotenv_and_hide_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "DATABASE_URL",
        "COUNTERSIGN_CONFIG",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SLACK_API_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "COUNTERSIGN_API_TOKEN",
    ]:
        monkeypatch.delenv(name, raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text("SLACK_BOT_TOKEN=xoxb-hush\nCOUNTERSIGN_CONFIG=/etc/cs.yml\nSLACK_APP_TOKEN=\n")
    monkeypatch.setenv("COUNTERSIGN_API_TOKEN", "api-hush")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9999/api/")

    settings = Settings(_env_file=dotenv)

    assert settings.database_url == "sqlite:///countersign.db"
    assert settings.config_path == "/etc/cs.yml"
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"
    assert settings.slack_app_token is None
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-hush"
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "api-hush"
    assert "hush" not in repr(settings)
    assert "hush" not in str(settings.model_dump())


DELEGATED = """\
slack: {approvals_channel: C0APPROVALS}
oauth_providers:
  github:
    token_url: https://github.com/login/oauth/access_token
    client_id: Iv1.countersign
    client_secret_name: github_client_secret
task_types:
  prs:
    tools: [open_pr]
    approvers: [U0ALICE]
    credentials: requester
"""


def test_credentials_and_oauth_providers_load(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DELEGATED), {})
    assert config.task_types["prs"].credentials == "requester"
    github = config.oauth_providers["github"]
    assert (github.client_id, github.client_secret_name, github.timeout) == (
        "Iv1.countersign",
        "github_client_secret",
        timedelta(seconds=10),
    )
    assert load_config(write(tmp_path, MINIMAL), {}).task_types["refund"].credentials is None


def test_a_bad_credentials_value_names_its_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, DELEGATED.replace("credentials: requester", "credentials: owner"))
    problem = only_problem(path)
    line = line_of(DELEGATED, "credentials:")
    assert problem == (
        f"task_types.prs.credentials (line {line}): Input should be 'requester' or 'approver', got 'owner'"
    )


def test_the_approvers_credential_needs_approvers(tmp_path: Path) -> None:
    text = DELEGATED.replace("approvers: [U0ALICE]", "autonomy: auto").replace("requester", "approver")
    problem = only_problem(write(tmp_path, text))
    assert problem.startswith("task_types.prs.approvers")
    assert "need at least one approver: []" in problem


@pytest.mark.parametrize("url", ["http://github.com/token", "ftp://github.com/token", "github.com/token", "https://"])
def test_a_token_url_must_be_https_except_on_localhost(tmp_path: Path, url: str) -> None:
    text = DELEGATED.replace("https://github.com/login/oauth/access_token", url)
    problem = only_problem(write(tmp_path, text))
    assert problem.startswith(f"oauth_providers.github.token_url (line {line_of(DELEGATED, 'token_url')}): ")
    assert problem.endswith(f"not an https:// URL (http:// only for localhost): {url!r}")
    local = DELEGATED.replace("https://github.com/login/oauth/access_token", "http://127.0.0.1:8080/token")
    assert load_config(write(tmp_path, local), {}).oauth_providers["github"].token_url.startswith("http://127")


CONNECTED = DELEGATED.replace(
    "    client_secret_name: github_client_secret\n",
    "    client_secret_name: github_client_secret\n"
    "    authorize_url: https://github.com/login/oauth/authorize\n"
    "    scopes: [repo]\n"
    "    secrets: [github_token]\n",
)


def test_a_provider_people_sign_in_at_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONNECTED), {})
    github = config.oauth_providers["github"]
    assert (github.authorize_url, github.scopes, github.secrets) == (
        "https://github.com/login/oauth/authorize",
        ["repo"],
        ["github_token"],
    )
    assert config.connect_provider("github_token") == "github"
    assert config.connect_provider("stripe_key") is None
    assert load_config(write(tmp_path, DELEGATED), {}).connect_provider("github_token") is None


def test_an_authorize_url_must_be_https_except_on_localhost(tmp_path: Path) -> None:
    text = CONNECTED.replace("https://github.com/login/oauth/authorize", "http://github.com/authorize")
    problem = only_problem(write(tmp_path, text))
    assert problem.startswith(f"oauth_providers.github.authorize_url (line {line_of(text, 'authorize_url')}): ")
    assert problem.endswith("not an https:// URL (http:// only for localhost): 'http://github.com/authorize'")


def test_an_authorize_url_names_the_secrets_it_connects(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, CONNECTED.replace("    secrets: [github_token]\n", "")))
    assert problem.startswith("oauth_providers.github.secrets")
    assert "required with authorize_url" in problem
    without_url = CONNECTED.replace("    authorize_url: https://github.com/login/oauth/authorize\n", "")
    assert only_problem(write(tmp_path, without_url)).startswith("oauth_providers.github.authorize_url")


def test_a_secret_is_connected_through_one_provider(tmp_path: Path) -> None:
    second = (
        "  gitea:\n    token_url: https://gitea.test/token\n    client_id: cs\n"
        "    authorize_url: https://gitea.test/authorize\n    secrets: [github_token]\n"
    )
    text = CONNECTED.replace("task_types:\n", f"{second}task_types:\n")
    problem = only_problem(write(tmp_path, text))
    assert problem.startswith("oauth_providers.gitea.secrets[0]")
    assert problem.endswith("already connected through provider 'github': 'github_token'")


def test_connecting_from_slack_needs_a_public_url_and_vault_keys(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONNECTED), {})
    problems = connect_problems(Settings(_env_file=None), config)
    assert any("COUNTERSIGN_PUBLIC_URL is not" in problem for problem in problems)
    assert any("set COUNTERSIGN_VAULT_KEYS" in problem for problem in problems)
    assert "oauth_providers.github.authorize_url" in problems[0]
    bad = Settings(_env_file=None, public_url="http://countersign.example.com", vault_keys="k")
    assert connect_problems(bad, config) == [
        "COUNTERSIGN_PUBLIC_URL: not an https:// URL (http:// only for localhost): 'http://countersign.example.com'"
    ]
    good = Settings(_env_file=None, public_url="https://countersign.example.com", vault_keys="k")
    assert connect_problems(good, config) == []
    assert connect_problems(Settings(_env_file=None), load_config(write(tmp_path, DELEGATED), {})) == []
