"""`verify_webhook`: a delivery is trusted only with its three headers, a fresh timestamp and
a signature over exactly the bytes received, keyed by the client's webhook secret."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from countersign_client import Delivery, InvalidSignature, verify_webhook
from countersign_client.webhooks import signature

SECRET = "whsec-test-0123456789"
NOW = 1_796_000_000
BODY = json.dumps({"action_id": "act_123", "state": "approved", "at": "2026-12-07T14:00:00+00:00"}).encode()


def _signed(body: bytes = BODY, stamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Countersign-Timestamp": str(stamp),
        "X-Countersign-Delivery": "dlv_1",
        "X-Countersign-Signature": f"v1={digest}",
    }


def test_a_delivery_signed_with_the_secret_is_returned_parsed() -> None:
    delivery = verify_webhook(SECRET, _signed(), BODY, now=NOW + 10)
    assert delivery == Delivery(
        delivery_id="dlv_1",
        timestamp=NOW,
        action_id="act_123",
        state="approved",
        at="2026-12-07T14:00:00+00:00",
        payload=json.loads(BODY),
    )


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_under_the_utf8_secret() -> None:
    secret = "clé-secrète"  # the key is the secret's UTF-8 bytes
    expected = hmac.new("clé-secrète".encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(secret, 1700000000, BODY) == f"v1={expected}"
    assert signature(secret, "1700000000", BODY.decode()) == f"v1={expected}"


def test_header_names_match_in_any_case_and_a_text_body_is_the_same_bytes() -> None:
    headers = {name.lower(): value for name, value in _signed().items()}
    assert verify_webhook(SECRET, headers, BODY.decode(), now=NOW).action_id == "act_123"


def test_any_of_several_signatures_may_match() -> None:
    headers = _signed()
    headers["X-Countersign-Signature"] = "v1=" + "0" * 64 + ", " + headers["X-Countersign-Signature"]
    assert verify_webhook(SECRET, headers, BODY, now=NOW).state == "approved"


@pytest.mark.parametrize(
    ("secret", "body", "message"),
    [
        ("another-secret", BODY, "does not match"),
        (SECRET, BODY.replace(b"approved", b"rejected"), "does not match"),
        (SECRET, BODY + b" ", "does not match"),
    ],
)
def test_a_wrong_secret_or_a_changed_body_is_refused(secret: str, body: bytes, message: str) -> None:
    with pytest.raises(InvalidSignature, match=message):
        verify_webhook(secret, _signed(), body, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 10_000_000])
def test_a_timestamp_outside_the_tolerance_is_refused_even_when_signed(skew: int) -> None:
    with pytest.raises(InvalidSignature, match=r"X-Countersign-Timestamp is .* s from now"):
        verify_webhook(SECRET, _signed(), BODY, now=NOW + skew)


def test_the_tolerance_is_the_callers() -> None:
    assert verify_webhook(SECRET, _signed(), BODY, tolerance_s=3600, now=NOW + 3000).action_id == "act_123"
    with pytest.raises(InvalidSignature):
        verify_webhook(SECRET, _signed(), BODY, tolerance_s=5, now=NOW + 6)


@pytest.mark.parametrize("header", ["X-Countersign-Timestamp", "X-Countersign-Delivery", "X-Countersign-Signature"])
def test_each_header_is_required(header: str) -> None:
    headers = _signed()
    del headers[header]
    with pytest.raises(InvalidSignature, match=f"the {header} header is missing"):
        verify_webhook(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize("stamp", ["", "17e8", "-5", " 1796000000", "1" * 40, "\uff11\uff12\uff13"])
def test_a_timestamp_that_is_not_plain_unix_seconds_is_refused(stamp: str) -> None:
    headers = _signed() | {"X-Countersign-Timestamp": stamp}
    with pytest.raises(InvalidSignature, match="X-Countersign-Timestamp"):
        verify_webhook(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"action_id": "act_1", "state": "approved"}', "lacks at"),
        (b'{"action_id": 5, "at": "x"}', "lacks action_id, state"),
    ],
)
def test_a_signed_body_that_is_no_delivery_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(InvalidSignature, match=message):
        verify_webhook(SECRET, _signed(body), body, now=NOW)


def test_an_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        verify_webhook("", _signed(), BODY, now=NOW)
