"""The vault on real databases: sealing, binding, listing, deleting, key rotation under live
reads, the scrubber, the `@tool(secrets=...)` declaration and the `countersign secrets` CLI.

TEMPORARY: `secrets_table` creates the `secrets` table until its migration exists.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agent import tool
from agent.errors import InvalidParams, InvalidToolDefinition
from agent.tools import Secrets, spec_of
from agent.vault import (
    InvalidSecret,
    OAuthGrant,
    Scrubber,
    Secret,
    SecretMisuse,
    SecretNotSet,
    SecretUnreadable,
    StaleSecret,
    Vault,
    VaultKeyError,
    generate_key,
    key_id,
    parse_keys,
)
from bot.cli_secrets import secrets as secrets_cli
from core.models import AuditEvent
from tests.agent import secret_tools
from tests.agent.helpers import assert_chain_ok
from tests.agent.secret_tools import secrets_table
from tests.fakes.clock import FrozenClock

OLD_KEY, NEW_KEY = generate_key(), generate_key()
STRIPE = "sk_live_51Hq" + "x9PLANTEDsecretVALUE"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def table(engine: Engine) -> Iterator[None]:
    with secrets_table(engine):
        yield


@pytest.fixture
def vault(table: None, sessions: sessionmaker[Session], clock: FrozenClock) -> Vault:
    return Vault(sessions, [OLD_KEY], clock=clock)


def _row(sessions: sessionmaker[Session], name: str, scope: str, owner: str = "team") -> Secret:
    with sessions() as session:
        query = select(Secret).where(Secret.name == name, Secret.scope == scope, Secret.owner == owner)
        return session.scalars(query).one()


def _audit_dump(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(e.kind, f"{e.note} {e.data}") for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


# -- round trip, scope and owner ----------------------------------------------------------------


def test_a_secret_round_trips_and_is_encrypted_at_rest(vault: Vault, sessions, clock) -> None:
    assert vault.put("stripe_api_key", STRIPE, scope="charge_card") is False
    assert vault.get("stripe_api_key", tool="charge_card") == STRIPE

    row = _row(sessions, "stripe_api_key", "charge_card")
    assert STRIPE not in row.ciphertext
    assert (row.owner, row.team_id, row.created_at, row.rotated_at) == ("team", None, clock.now(), None)
    assert row.key_id == key_id(OLD_KEY) == vault.current_key_id
    assert Fernet(OLD_KEY).decrypt(row.ciphertext.encode()) != STRIPE.encode()  # a payload, not the bare value


def test_a_secret_is_only_given_to_its_tool_or_to_every_tool_when_scoped_star(vault: Vault) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    vault.put("webhook_token", "whk-shared-token", scope="*")
    vault.put("webhook_token", "whk-for-notify-only", scope="notify_webhook")

    with pytest.raises(SecretNotSet) as refused:
        vault.get("stripe_api_key", tool="issue_refund")
    assert str(refused.value) == (
        "secret 'stripe_api_key' is not set: `countersign secrets set stripe_api_key --tool issue_refund`"
    )
    assert vault.get("webhook_token", tool="charge_card") == "whk-shared-token"
    assert vault.get("webhook_token", tool="notify_webhook") == "whk-for-notify-only"  # its own beats `*`


def test_a_secret_belongs_to_its_owner(vault: Vault) -> None:
    vault.put("github_token", "ghp-of-alice", scope="open_pr", owner="U0ALICE")
    assert vault.get("github_token", tool="open_pr", owner="U0ALICE") == "ghp-of-alice"
    with pytest.raises(SecretNotSet, match="--owner U0BOB"):
        vault.get("github_token", tool="open_pr", owner="U0BOB")
    with pytest.raises(SecretNotSet):
        vault.get("github_token", tool="open_pr")  # not the team's


def test_replacing_a_value_keeps_created_at_and_sets_rotated_at(vault: Vault, sessions, clock) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    created = clock.now()
    clock.advance(timedelta(days=3))
    assert vault.put("stripe_api_key", STRIPE + "-v2", scope="charge_card") is True

    assert vault.get("stripe_api_key", tool="charge_card") == STRIPE + "-v2"
    row = _row(sessions, "stripe_api_key", "charge_card")
    assert (row.created_at, row.rotated_at) == (created, clock.now())
    clock.advance(timedelta(hours=5))
    [info] = vault.list()
    assert info.age(clock.now()) == timedelta(hours=5)


def test_names_scopes_owners_and_values_are_checked(vault: Vault) -> None:
    for bad in [
        lambda: vault.put("has space", "v", scope="charge_card"),
        lambda: vault.put("ok", "v", scope="not a tool"),
        lambda: vault.put("ok", "v", scope="charge_card", owner="alice"),
        lambda: vault.put("ok", "", scope="charge_card"),
        lambda: vault.put("ok", "v", scope="charge_card", team_id="acme"),
        lambda: vault.put("ok", "v", scope="charge_card", actor="someone with a very long name indeed"),
        lambda: vault.delete("ok", scope="charge_card", actor="bob"),
    ]:
        with pytest.raises(InvalidSecret):
            bad()


def test_delete_removes_one_secret(vault: Vault) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    vault.put("stripe_api_key", "shared", scope="*")
    assert vault.delete("stripe_api_key", scope="charge_card") is True
    assert vault.delete("stripe_api_key", scope="charge_card") is False
    assert vault.get("stripe_api_key", tool="charge_card") == "shared"


# -- binding: a ciphertext only decrypts as valid on its own row ---------------------------------


@pytest.mark.parametrize(
    ("name", "scope", "owner", "problem"),
    [
        ("webhook_token", "charge_card", "team", "name 'webhook_token' (sealed for 'stripe_api_key')"),
        ("stripe_api_key", "issue_refund", "team", "scope 'issue_refund' (sealed for 'charge_card')"),
        ("stripe_api_key", "*", "team", "scope '*' (sealed for 'charge_card')"),
        ("stripe_api_key", "charge_card", "U0MALLORY", "owner 'U0MALLORY' (sealed for 'team')"),
    ],
)
def test_a_ciphertext_copied_to_another_row_is_refused(vault: Vault, sessions, name, scope, owner, problem) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    vault.put(name, "a decoy value", scope=scope, owner=owner)
    stolen = _row(sessions, "stripe_api_key", "charge_card").ciphertext
    with sessions.begin() as session:  # someone with database access copies the ciphertext across
        session.execute(
            update(Secret)
            .where(Secret.name == name, Secret.scope == scope, Secret.owner == owner)
            .values(ciphertext=stolen)
        )

    tool_name = "plain" if scope == "*" else scope  # a tool that only a `*` secret serves
    with pytest.raises(SecretMisuse) as refused:
        vault.get(name, tool=tool_name, owner=owner)
    assert problem in str(refused.value)
    assert "was copied or altered" in str(refused.value)
    assert STRIPE not in str(refused.value)


def test_a_ciphertext_copied_to_another_team_is_refused(vault: Vault, sessions) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card", team_id="T0AAA")
    vault.put("stripe_api_key", "team B's own", scope="charge_card", team_id="T0BBB")
    with sessions.begin() as session:
        stolen = session.scalars(select(Secret.ciphertext).where(Secret.team_id == "T0AAA")).one()
        session.execute(update(Secret).where(Secret.team_id == "T0BBB").values(ciphertext=stolen))
    assert vault.get("stripe_api_key", tool="charge_card", team_id="T0AAA") == STRIPE
    with pytest.raises(SecretMisuse, match="team_id 'T0BBB' \\(sealed for 'T0AAA'\\)"):
        vault.get("stripe_api_key", tool="charge_card", team_id="T0BBB")


def test_an_altered_or_foreign_ciphertext_is_unreadable(vault: Vault, sessions) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    vault.put("webhook_token", "whk", scope="*")
    foreign = Fernet(generate_key()).encrypt(b'{"v": 1}').decode()
    with sessions.begin() as session:
        session.execute(update(Secret).where(Secret.name == "webhook_token").values(ciphertext=foreign))
        row = session.scalars(select(Secret).where(Secret.name == "stripe_api_key")).one()
        row.ciphertext = row.ciphertext[:-6] + ("AAAAAA" if not row.ciphertext.endswith("AAAAAA") else "BBBBBB")

    for name, tool_name in [("stripe_api_key", "charge_card"), ("webhook_token", "plain")]:
        with pytest.raises(SecretUnreadable, match="cannot be decrypted with any key in COUNTERSIGN_VAULT_KEYS"):
            vault.get(name, tool=tool_name)


def test_a_sealed_payload_that_is_not_a_secret_is_refused(vault: Vault, sessions) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    with sessions.begin() as session:  # sealed with the right key, but not by the vault
        forged = Fernet(OLD_KEY).encrypt(STRIPE.encode()).decode()
        session.execute(update(Secret).values(ciphertext=forged))
    with pytest.raises(SecretMisuse, match="not a sealed countersign secret"):
        vault.get("stripe_api_key", tool="charge_card")


# -- versions: an older ciphertext of the same secret written back is refused -------------------


def _write_back(sessions: sessionmaker[Session], ciphertext: str) -> None:
    """Someone with database access puts an old ciphertext back, leaving the row's version."""
    with sessions.begin() as session:
        session.execute(update(Secret).where(Secret.name == "stripe_api_key").values(ciphertext=ciphertext))


def test_an_older_ciphertext_written_back_over_a_secret_is_refused(vault: Vault, sessions) -> None:
    vault.put("stripe_api_key", "sk_revoked_last_week", scope="charge_card")
    old = _row(sessions, "stripe_api_key", "charge_card")
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    assert (old.version, _row(sessions, "stripe_api_key", "charge_card").version) == (1, 2)

    _write_back(sessions, old.ciphertext)
    with pytest.raises(StaleSecret) as refused:
        vault.get("stripe_api_key", tool="charge_card")
    assert "secret 'stripe_api_key' (tool 'charge_card', owner 'team') refused" in str(refused.value)
    assert "its ciphertext is of version 1, but the row is at version 2" in str(refused.value)
    assert isinstance(refused.value, SecretMisuse)  # handled wherever a misused row is
    assert "sk_revoked" not in str(refused.value)


def test_a_refreshed_token_raises_the_version_and_the_one_before_is_refused(vault: Vault, sessions) -> None:
    grant = OAuthGrant("github", "refresh-1")
    vault.put("stripe_api_key", "access-1", scope="charge_card", owner="U0ALICE", oauth=grant)
    before = _row(sessions, "stripe_api_key", "charge_card", "U0ALICE").ciphertext
    with sessions.begin() as session:  # the executor's refresh: fetch under the row lock, then replace
        [secret] = vault.fetch(session, ["stripe_api_key"], tool="charge_card", owner="U0ALICE", lock=True)
        vault.replace(session, secret, "access-2", OAuthGrant("github", "refresh-2"))
    assert vault.get("stripe_api_key", tool="charge_card", owner="U0ALICE") == "access-2"
    assert _row(sessions, "stripe_api_key", "charge_card", "U0ALICE").version == 2

    _write_back(sessions, before)  # the spent refresh token would come back with it
    with pytest.raises(StaleSecret, match="version 1, but the row is at version 2"):
        vault.grant("stripe_api_key", tool="charge_card", owner="U0ALICE")


def test_rekeying_keeps_the_version_and_a_stale_ciphertext_stays_refused(vault: Vault, sessions, clock) -> None:
    vault.put("stripe_api_key", "sk_old", scope="charge_card")
    stale = _row(sessions, "stripe_api_key", "charge_card").ciphertext
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    rotating = Vault(sessions, [NEW_KEY, OLD_KEY], clock=clock)
    assert rotating.rotate_key().rotated == 1
    row = _row(sessions, "stripe_api_key", "charge_card")
    assert (row.version, row.key_id) == (2, key_id(NEW_KEY))
    assert Vault(sessions, [NEW_KEY]).get("stripe_api_key", tool="charge_card") == STRIPE

    _write_back(sessions, rotating.reseal(stale))  # even re-keyed by hand, the old value is old
    with pytest.raises(StaleSecret):
        rotating.get("stripe_api_key", tool="charge_card")


def test_a_secret_sealed_before_versions_still_opens_until_it_is_written(vault: Vault, sessions) -> None:
    # What the vault wrote before versions existed: payload format 1, and the migration's version 0.
    legacy = {"v": 1, "name": "stripe_api_key", "scope": "charge_card", "owner": "team", "team_id": None}
    sealed = Fernet(OLD_KEY).encrypt(json.dumps({**legacy, "value": "sk_legacy"}, sort_keys=True).encode()).decode()
    vault.put("stripe_api_key", "placeholder", scope="charge_card")
    with sessions.begin() as session:
        session.execute(update(Secret).values(ciphertext=sealed, version=0))
    assert vault.get("stripe_api_key", tool="charge_card") == "sk_legacy"

    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    assert _row(sessions, "stripe_api_key", "charge_card").version == 1
    _write_back(sessions, sealed)  # once written, the pre-version ciphertext is an old one
    with pytest.raises(StaleSecret, match="its ciphertext is of version 0, but the row is at version 1"):
        vault.get("stripe_api_key", tool="charge_card")


# -- listing never shows values; changes are audited without them --------------------------------


def test_list_shows_names_scopes_owners_and_ages_never_values(vault: Vault, sessions, clock) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    clock.advance(timedelta(days=2))
    vault.put("github_token", "ghp-of-alice-0123456789", scope="open_pr", owner="U0ALICE")

    listed = vault.list()
    assert [(i.name, i.scope, i.owner, i.current_key) for i in listed] == [
        ("github_token", "open_pr", "U0ALICE", True),
        ("stripe_api_key", "charge_card", "team", True),
    ]
    assert [i.age(clock.now()) for i in listed] == [timedelta(0), timedelta(days=2)]
    for shown in (repr(listed), str(listed), repr(vault)):
        assert STRIPE not in shown
        assert "ghp-of-alice" not in shown


def test_changes_are_audited_without_values(vault: Vault, sessions) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card", actor="U0ADMIN")
    vault.put("stripe_api_key", STRIPE + "2", scope="charge_card")
    vault.delete("stripe_api_key", scope="charge_card")
    events = _audit_dump(sessions)
    assert [kind for kind, _ in events] == ["secret.set", "secret.set", "secret.deleted"]
    assert all(STRIPE not in body for _, body in events)
    with sessions() as session:
        first = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).first()
        assert first is not None
        assert first.actor == "U0ADMIN"
        assert first.data == {
            "secret": "stripe_api_key",
            "scope": "charge_card",
            "owner": "team",
            "team_id": None,
            "replaced": False,
        }
    assert_chain_ok(sessions)


# -- keys and rotation --------------------------------------------------------------------------


def test_keys_are_read_newest_first_and_bad_ones_are_named_by_position_only(sessions) -> None:
    assert parse_keys(f" {NEW_KEY} ,, {OLD_KEY},") == [NEW_KEY, OLD_KEY]
    with pytest.raises(VaultKeyError, match="COUNTERSIGN_VAULT_KEYS: no keys"):
        Vault(sessions, [])
    bad = "not-a-key-but-still-a-secret-0123456789"
    with pytest.raises(VaultKeyError) as refused:
        Vault(sessions, [NEW_KEY, bad])
    assert "key 2 of 2 is not a Fernet key" in str(refused.value)
    assert bad not in str(refused.value)
    assert NEW_KEY not in repr(Vault(sessions, [NEW_KEY]))


def test_rotation_re_encrypts_every_row_with_the_newest_key(vault: Vault, sessions, clock) -> None:
    for number in range(7):
        vault.put(f"key_{number}", f"value-{number}", scope="*")
    before = {row.name: row.ciphertext for row in _rows(sessions)}

    rotating = Vault(sessions, [NEW_KEY, OLD_KEY], clock=clock)
    report = rotating.rotate_key(batch_size=3)
    assert (report.rotated, report.unreadable) == (7, [])
    assert rotating.rotate_key(batch_size=3).rotated == 0  # resumable: nothing left to do

    only_new = Vault(sessions, [NEW_KEY])
    only_old = Vault(sessions, [OLD_KEY])
    for row in _rows(sessions):
        assert row.ciphertext != before[row.name]
        assert row.key_id == key_id(NEW_KEY)
        assert row.rotated_at is None  # the value did not change
        assert only_new.get(row.name, tool="plain") == f"value-{row.name.removeprefix('key_')}"
        with pytest.raises(SecretUnreadable):
            only_old.get(row.name, tool="plain")
    assert all(info.current_key for info in only_new.list())
    assert [data for kind, data in _audit_dump(sessions) if kind == "secret.key_rotated"] == [
        f"None {{'key_id': '{key_id(NEW_KEY)}', 'rows': {rows}}}" for rows in (3, 3, 1)
    ]


def test_rotation_leaves_rows_no_key_decrypts_and_reports_them(vault: Vault, sessions) -> None:
    vault.put("good", "value", scope="*")
    Vault(sessions, [generate_key()]).put("orphan", "value", scope="plain")  # its key is gone
    report = Vault(sessions, [NEW_KEY, OLD_KEY]).rotate_key()
    assert (report.rotated, report.unreadable) == (1, ["orphan (tool plain, owner team)"])


def _rows(sessions: sessionmaker[Session]) -> list[Secret]:
    with sessions() as session:
        return list(session.scalars(select(Secret).order_by(Secret.id)))


def test_every_secret_stays_readable_before_during_and_after_a_rotation(vault: Vault, sessions, clock) -> None:
    names = [f"secret_{number:02d}" for number in range(24)]
    for name in names:
        vault.put(name, f"value of {name}", scope="*")

    phase = {"now": "before"}
    reads: dict[str, int] = {"before": 0, "during": 0, "after": 0}
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def reader(keys: list[str], seed: int) -> None:
        # Readers hold the key list in either order: any key in the list must keep working.
        mine, rng = Vault(sessions, keys), random.Random(seed)
        while not stop.is_set():
            name, when = rng.choice(names), phase["now"]
            try:
                value = mine.get(name, tool="any_tool")
                ok = value == f"value of {name}"
            except Exception as exc:
                ok, value = False, f"{type(exc).__name__}: {exc}"
            with lock:
                reads[when] += 1
                if not ok:
                    failures.append(f"{when}: {name}: {value}")

    def writer() -> None:
        # A person re-sets secrets while the rotation runs: row locks, not lost updates.
        mine = Vault(sessions, [NEW_KEY, OLD_KEY], clock=clock)
        while not stop.is_set():
            mine.put(names[0], f"value of {names[0]}", scope="*")
            time.sleep(0.005)

    seeds = enumerate([[NEW_KEY, OLD_KEY], [OLD_KEY, NEW_KEY], [NEW_KEY, OLD_KEY], [OLD_KEY, NEW_KEY]])
    threads = [threading.Thread(target=reader, args=(keys, seed)) for seed, keys in seeds]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: reads["before"] >= 20)
        phase["now"] = "during"
        report = Vault(sessions, [NEW_KEY, OLD_KEY], clock=clock).rotate_key(batch_size=1)
        phase["now"] = "after"
        _wait_for(lambda: reads["after"] >= 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)

    assert failures == []
    assert reads["during"] > 0, reads
    assert report.unreadable == []
    assert 1 <= report.rotated <= len(names)  # the writer may have re-sealed names[0] with the new key first
    only_new = Vault(sessions, [NEW_KEY])
    assert [only_new.get(name, tool="any_tool") for name in names] == [f"value of {name}" for name in names]
    assert {row.key_id for row in _rows(sessions)} == {key_id(NEW_KEY)}
    assert_chain_ok(sessions)


def _wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


# -- the scrubber -------------------------------------------------------------------------------


def test_the_scrubber_removes_values_and_their_escaped_forms() -> None:
    tricky = "p@ss'w\"rd/é"
    scrub = Scrubber({"stripe_api_key": STRIPE, "db_password": tricky, "empty": ""})
    assert scrub.text(f"refused {STRIPE!r}") == "refused '[redacted:stripe_api_key]'"
    assert scrub.text(f"error: {tricky!r}") == "error: '[redacted:db_password]'"
    assert scrub.text('{"password": "p@ss\'w\\"rd/\\u00e9"}') == '{"password": "[redacted:db_password]"}'
    assert scrub.text("https://x.test/?p=p%40ss%27w%22rd%2F%C3%A9") == "https://x.test/?p=[redacted:db_password]"
    assert scrub.data({STRIPE: [STRIPE, 1, None, {"k": (tricky,)}]}) == {
        "[redacted:stripe_api_key]": ["[redacted:stripe_api_key]", 1, None, {"k": ["[redacted:db_password]"]}]
    }
    assert STRIPE not in repr(scrub)


# -- @tool(secrets=...) -------------------------------------------------------------------------


def test_declared_secrets_are_not_parameters_and_arrive_as_a_mapping_that_hides_them() -> None:
    spec = spec_of(secret_tools.charge_card)
    assert spec.secrets == ("stripe_api_key",)
    schema = spec.json_schema()
    assert set(schema["properties"]) == {"order_id", "amount_cents", "mode"}
    assert "secrets" not in str(schema)
    with pytest.raises(InvalidParams, match="not a parameter"):
        spec.validate({"order_id": "1", "amount_cents": 5, "secrets": {"stripe_api_key": "from the model"}})

    with pytest.raises(InvalidParams, match="the tool needs stripe_api_key"):
        spec.call({"order_id": "1", "amount_cents": 5}, idempotency_key="act_1")
    extra = {"stripe_api_key": STRIPE, "webhook_token": "not declared by this tool"}
    assert spec.call({"order_id": "1", "amount_cents": 5}, idempotency_key="act_1", secrets=extra) == {
        "charged": 5,
        "order_id": "1",
    }
    assert secret_tools.GIVEN["act_1"] == {"stripe_api_key": STRIPE}  # exactly the declared ones

    given = Secrets({"stripe_api_key": STRIPE})
    assert repr(given) == str(given) == "Secrets(stripe_api_key=***)"
    with pytest.raises(KeyError, match="'other' is not a declared secret of this tool"):
        given["other"]


def test_bad_secret_declarations_are_refused_at_decoration() -> None:
    def takes_secrets(ref: str, *, secrets: Secrets) -> None: ...

    def takes_none(ref: str) -> None: ...

    with pytest.raises(InvalidToolDefinition, match="has no 'secrets' parameter"):
        tool(secrets=["stripe_api_key"])(takes_none)
    with pytest.raises(InvalidToolDefinition, match="receives declared secrets"):
        tool(takes_secrets)
    with pytest.raises(InvalidToolDefinition, match="must be a list of secret names"):
        tool(secrets="stripe_api_key")(takes_secrets)
    with pytest.raises(InvalidToolDefinition, match="not a secret name: 'two words'"):
        tool(secrets=["two words"])(takes_secrets)


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(db_url: str, table: None) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "COUNTERSIGN_VAULT_KEYS": OLD_KEY}


def test_cli_sets_lists_and_deletes_without_ever_printing_a_value(cli_env, sessions) -> None:
    runner = CliRunner()
    done = runner.invoke(
        secrets_cli, ["set", "stripe_api_key", "--tool", "charge_card"], input=STRIPE + "\n", env=cli_env
    )
    assert done.exit_code == 0, done.output
    assert done.output == "secret 'stripe_api_key' set for tool 'charge_card' (owner team)\n"
    assert Vault(sessions, [OLD_KEY]).get("stripe_api_key", tool="charge_card") == STRIPE  # newline dropped

    again = runner.invoke(secrets_cli, ["set", "stripe_api_key", "--tool", "charge_card"], input=STRIPE, env=cli_env)
    assert "replaced" in again.output

    listed = runner.invoke(secrets_cli, ["list"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    header, line = listed.output.splitlines()
    assert header.split() == ["NAME", "TOOL", "OWNER", "AGE", "KEY"]
    assert line.split()[:3] == ["stripe_api_key", "charge_card", "team"]
    assert line.split()[-1] == "current"

    gone = runner.invoke(secrets_cli, ["delete", "stripe_api_key", "--tool", "charge_card"], env=cli_env)
    assert gone.exit_code == 0, gone.output
    missing = runner.invoke(secrets_cli, ["delete", "stripe_api_key", "--tool", "charge_card"], env=cli_env)
    assert missing.exit_code == 1
    assert "no secret 'stripe_api_key' for tool 'charge_card'" in missing.output

    for result in (done, again, listed, gone, missing):
        assert STRIPE not in result.output
    assert runner.invoke(secrets_cli, ["list"], env=cli_env).output == "no secrets\n"


def test_cli_list_prints_an_altered_rows_escape_sequences_as_visible_text(cli_env, sessions) -> None:
    runner = CliRunner()
    runner.invoke(secrets_cli, ["set", "stripe_api_key", "--tool", "charge_card"], input=STRIPE, env=cli_env)
    with sessions.begin() as session:  # someone with database access plants a terminal escape
        session.execute(update(Secret).values(name="stripe\x1b]0;pwn\x07\x1b[2J\nfake_row"))
    listed = runner.invoke(secrets_cli, ["list"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    assert "\x1b" not in listed.output and "\x07" not in listed.output
    _header, line = listed.output.splitlines()
    assert line.startswith("stripe\\x1b]0;pwn\\x07\\x1b[2J\\nfake_row  charge_card")


def test_cli_refuses_an_empty_value_and_a_missing_key(cli_env) -> None:
    runner = CliRunner()
    empty = runner.invoke(secrets_cli, ["set", "stripe_api_key", "--tool", "charge_card"], input="", env=cli_env)
    assert empty.exit_code == 1
    assert "no value on stdin" in empty.output
    bad = runner.invoke(secrets_cli, ["set", "two words", "--tool", "charge_card"], input=STRIPE, env=cli_env)
    assert bad.exit_code == 1
    assert "not a secret name: 'two words'" in bad.output
    assert STRIPE not in bad.output
    no_keys = {**cli_env, "COUNTERSIGN_VAULT_KEYS": ""}
    unset = runner.invoke(secrets_cli, ["list"], env=no_keys)
    assert unset.exit_code == 1
    assert "set COUNTERSIGN_VAULT_KEYS" in unset.output


def test_cli_rotates_to_the_first_key_and_generates_keys(cli_env, sessions) -> None:
    runner = CliRunner()
    runner.invoke(secrets_cli, ["set", "stripe_api_key", "--tool", "charge_card"], input=STRIPE, env=cli_env)

    fresh = runner.invoke(secrets_cli, ["generate-key"])
    assert fresh.exit_code == 0
    new_key = fresh.output.strip()
    Fernet(new_key)  # a valid key

    both = {**cli_env, "COUNTERSIGN_VAULT_KEYS": f"{new_key},{OLD_KEY}"}
    stale = runner.invoke(secrets_cli, ["list"], env=both)
    assert stale.output.splitlines()[1].split()[-1] == "old"
    rotated = runner.invoke(secrets_cli, ["rotate-key"], env=both)
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 1 secret" in rotated.output
    assert "may now be removed" in rotated.output
    assert Vault(sessions, [new_key]).get("stripe_api_key", tool="charge_card") == STRIPE
    assert STRIPE not in rotated.output + stale.output


def test_cli_rotation_names_rows_it_cannot_read(cli_env, sessions) -> None:
    Vault(sessions, [generate_key()]).put("orphan", "value", scope="plain")
    result = CliRunner().invoke(secrets_cli, ["rotate-key"], env={**cli_env, "COUNTERSIGN_VAULT_KEYS": NEW_KEY})
    assert result.exit_code == 1
    assert "orphan (tool plain, owner team)" in result.output


def test_the_table_allows_one_secret_per_name_scope_owner_and_team(vault: Vault, sessions, clock) -> None:
    vault.put("stripe_api_key", STRIPE, scope="charge_card")
    vault.put("stripe_api_key", STRIPE, scope="charge_card", team_id="T0AAA")
    for team_id in (None, "T0AAA"):  # a second row beside the vault's, as a racing writer would add
        with pytest.raises(IntegrityError), sessions.begin() as session:
            row = Secret(name="stripe_api_key", scope="charge_card", owner="team", team_id=team_id)
            row.ciphertext, row.key_id, row.created_at = "x", "y", clock.now()
            session.add(row)
