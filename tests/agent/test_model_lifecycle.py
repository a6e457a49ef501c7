"""Our own list of deprecated and retired models decides `config check`, whatever SDK is installed."""

from __future__ import annotations

from datetime import date

from agent.model_lifecycle import MODELS, model_problem


def test_a_current_model_has_no_problem() -> None:
    assert model_problem("claude-sonnet-4-6", date(2026, 12, 7)) is None


def test_a_retired_model_is_named_with_its_date() -> None:
    assert model_problem("claude-3-5-haiku-latest", date(2026, 12, 7)) == (
        "'claude-3-5-haiku-latest' is retired (since 2026-02-19): requests to it fail; choose a current model"
    )


def test_a_deprecated_model_counts_as_retired_once_its_date_has_passed() -> None:
    assert MODELS["claude-opus-4-5"].status == "deprecated"
    before = model_problem("claude-opus-4-5", date(2027, 1, 21))
    after = model_problem("claude-opus-4-5", date(2027, 1, 22))
    assert before == "'claude-opus-4-5' is deprecated (retires 2027-01-22); choose a current model"
    assert after is not None and "is retired (since 2027-01-22)" in after
