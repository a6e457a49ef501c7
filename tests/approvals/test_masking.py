"""Secret-looking values masked for people (`approvals.masking`): by their key's name, by their
shape, inside shell commands and JSON text; a text keeps its lines; ids, hashes and ordinary
words are left alone."""

from __future__ import annotations

import secrets
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approvals.masking import MASK, is_secret_name, looks_random, mask_params, mask_text, mask_value

STRIPE = "sk_live_DEMO0000notarealkey00000"  # not a real key: the shape of one
ANTHROPIC = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"
GITHUB = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
SLACK = "xoxb-1234567890-abcdefghijklmnop"
AWS = "AKIAIOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
RANDOM = "aB3xY9kLmN2pQ7rS4tU8vW1zC5dE6fG0hJ"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"export STRIPE_API_KEY={STRIPE} && ./deploy.sh", "export STRIPE_API_KEY=sk_live_…•••• && ./deploy.sh"),
        (f"key {ANTHROPIC}", "key sk-ant-api03-…••••"),
        (f"{GITHUB} {SLACK} {AWS}", "ghp_…•••• xoxb-…•••• AKIA…••••"),
        (f"token {JWT}", "token eyJ…••••"),
        (
            'curl -H "Authorization: Bearer abcdefghijklmnopqrstuvwx" https://x',
            'curl -H "Authorization: Bearer ••••" https://x',
        ),
        ("curl -H 'X-Api-Key: abc123def' https://x", "curl -H 'X-Api-Key: ••••' https://x"),
        ("TOKEN=hunter2 make deploy", "TOKEN=•••• make deploy"),
        ("mysql --password=hunter2 -u root", "mysql --password=•••• -u root"),
        ("mysql --password hunter2 -u root", "mysql --password •••• -u root"),
        ('{"password": "correct horse", "user": "bob"}', '{"password": "••••", "user": "bob"}'),
        ("postgres://bob:s3cret@db:5432/shop", "postgres://bob:••••@db:5432/shop"),
        (f"random {RANDOM} end", "random •••• end"),
    ],
)
def test_secrets_in_text_are_masked_keeping_what_they_were(text: str, shown: str) -> None:
    assert mask_text(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "rm -rf build/ && make test",
        "params 21528d8b21fb5c26f8b0495fbfec035a8f0ddad23ef0eb0a371c0d6b7cef96c9 (a sha256: hex is a hash)",
        "action act_m991w5cvbfd81a01 · task tsk_m991w5cs0825fmd8",
        "/home/dev/shop/src/ComponentsRegistryLoaderFactory2.py ThisIsAVeryLongCamelCaseIdentifier1Name",
        "max_tokens=5000 cd $PWD; author: Bob; --token-file ~/.token; secret_name: STRIPE_KEY",
        "Refund order 1001, it arrived broken",
        "DEBUG = False\nPAYMENTS_TIMEOUT_S = 30",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_a_pem_private_key_keeps_its_lines() -> None:
    pem = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83vEi+8/3Nk\n-----END RSA PRIVATE KEY-----\nnext"
    assert mask_text(pem) == (
        f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{MASK}\n{MASK}\n-----END RSA PRIVATE KEY-----\nnext"
    )


LINES = [STRIPE, "echo hi", "TOKEN=x y", "", "-----BEGIN PRIVATE KEY-----", "a b", "-----END PRIVATE KEY-----"]


@given(st.lists(st.sampled_from(LINES), max_size=8))
def test_masking_never_changes_the_number_of_lines(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert mask_text(text).count("\n") == text.count("\n")


def test_random_keys_are_caught_most_of_the_time() -> None:
    alphabet = string.ascii_letters + string.digits
    keys = ["".join(secrets.choice(alphabet) for _ in range(40)) for _ in range(300)]
    assert sum(looks_random(key) for key in keys) >= 270  # a heuristic: the named and prefixed rules do the rest


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("api_key", True),
        ("STRIPE_API_KEY", True),
        ("clientSecret", True),
        ("Authorization", True),
        ("X-Api-Key", True),
        ("github_token", True),
        ("private_key", True),
        ("max_tokens", False),
        ("author", False),
        ("auth_url", False),
        ("secret_name", False),
        ("token_count", False),
        ("command", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_params_are_masked_by_name_and_by_shape_keeping_their_shape() -> None:
    params = {
        "password": "hunter2",
        "api_key": ANTHROPIC,
        "headers": {"Authorization": "Bearer abcdefghijkl", "Accept": "json"},
        "tokens": [GITHUB, "plain"],
        "max_tokens": 500,
        "enabled": True,
        "command": f"TOKEN={STRIPE} run",
    }
    assert mask_params(params) == {
        "password": MASK,
        "api_key": "sk-ant-api03-…••••",
        "headers": {"Authorization": "Bearer ••••", "Accept": "json"},
        "tokens": ["ghp_…••••", "plain"],
        "max_tokens": 500,
        "enabled": True,
        "command": "TOKEN=sk_live_…•••• run",
    }
    assert params["password"] == "hunter2"  # the input is left as it was


def test_by_shape_only_keeps_the_ledgers_own_keys() -> None:
    data = {"secret": "STRIPE_KEY", "note": f"ran with {STRIPE}"}
    assert mask_value(data, by_name=False) == {"secret": "STRIPE_KEY", "note": "ran with sk_live_…••••"}
