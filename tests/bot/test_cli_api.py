"""`config check` with external tools, and `countersign api-client create|list|revoke`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from cryptography.fernet import Fernet

from bot.cli import main
from core.db import make_engine
from core.migrate import upgrade

CONFIG = """\
slack:
  approvals_channel: C0APPROVALS
tools: {modules: [tests.approvals.shop_tools]}
external_tools:
  restart_service:
    description: Restart a production service
    params: {type: object, properties: {service: {type: string}}, required: [service], additionalProperties: false}
    risk: high
    max_autonomy: hitl
api: {webhook_hosts: [hooks.example.com]}
task_types:
  ops:
    tools: [restart_service, lookup_order]
    autonomy: hitl
    approvers: [U0ALICE]
  refund:
    tools: [lookup_order, issue_refund]
    approvers: [U0ALICE]
"""


def _check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "countersign.yml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["config", "check", "--file", str(path)])
    return result.exit_code, result.output


def test_config_check_shows_external_tools_mixed_with_tool_functions(tmp_path: Path) -> None:
    code, output = _check(tmp_path, CONFIG)
    assert code == 0, output
    assert "external tool restart_service: risk high, idempotent false, max_autonomy hitl; used by ops" in output
    assert output.endswith("ok\n")


def test_a_bad_params_schema_is_a_config_error_naming_the_tool(tmp_path: Path) -> None:
    code, output = _check(tmp_path, CONFIG.replace("{type: string}", "{type: strng}"))
    assert code == 1
    assert (
        "external_tools.restart_service.params (line 7): not a valid JSON Schema at properties.service.type" in output
    )


def test_an_external_tool_named_like_a_tool_function_is_refused(tmp_path: Path) -> None:
    code, output = _check(tmp_path, CONFIG.replace("restart_service", "lookup_order"))
    assert code == 1
    assert "two tools are named 'lookup_order'" in output


def test_api_client_create_prints_once_list_and_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cs.db'}"
    engine = make_engine(db)
    upgrade(engine)
    engine.dispose()
    (tmp_path / "countersign.yml").write_text(CONFIG)
    env = {
        "DATABASE_URL": db,
        "COUNTERSIGN_CONFIG": str(tmp_path / "countersign.yml"),
        "COUNTERSIGN_VAULT_KEYS": Fernet.generate_key().decode(),
    }
    runner = CliRunner()
    created = runner.invoke(main, ["api-client", "create", "deployer", "--task-types", "ops"], env=env)
    assert created.exit_code == 0, created.output
    printed = json.loads(created.output)
    assert set(printed) == {"name", "token", "webhook_secret"} and printed["name"] == "deployer"
    again = runner.invoke(main, ["api-client", "create", "deployer"], env=env)
    assert again.exit_code == 1 and "already exists" in again.output
    unknown = runner.invoke(main, ["api-client", "create", "other", "--task-types", "nope"], env=env)
    assert unknown.exit_code == 1 and "unknown task type(s) nope" in unknown.output
    listed = runner.invoke(main, ["api-client", "list"], env=env)
    assert "deployer\tops\t" in listed.output and "active" in listed.output
    assert printed["token"] not in listed.output
    assert runner.invoke(main, ["api-client", "revoke", "deployer"], env=env).exit_code == 0
    assert "revoked" in runner.invoke(main, ["api-client", "list"], env=env).output
    no_keys = {key: value for key, value in env.items() if key != "COUNTERSIGN_VAULT_KEYS"}
    refused = runner.invoke(main, ["api-client", "create", "x"], env={**no_keys, "COUNTERSIGN_VAULT_KEYS": ""})
    assert refused.exit_code == 1 and "COUNTERSIGN_VAULT_KEYS" in refused.output
