"""The graduation rules are pure functions; these properties hold for any outcomes."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from approvals.graduation import (
    CLEAN,
    FAILED,
    INCIDENT,
    OUTCOMES,
    REJECTED,
    VETOED,
    Evidence,
    demotion,
    promotion,
    wilson_lower,
    wilson_upper,
)
from core.config import AutonomyLevel, GraduationConfig

HITL, HOTL, AUTO = AutonomyLevel.HITL, AutonomyLevel.HOTL, AutonomyLevel.AUTO
RULE = GraduationConfig()
SMALL = GraduationConfig(
    min_samples=5,
    min_days=0,
    min_approvers=1,
    target=0.5,
    max_reject_rate=0.5,
    auto_min_samples=5,
    auto_min_days=0,
    auto_max_veto_rate=0.9,
    demote_window=8,
)
outcome_lists = st.lists(st.sampled_from(OUTCOMES), max_size=300)


@given(st.integers(0, 500), st.integers(0, 500))
def test_wilson_bounds_are_proportions_around_the_rate(successes: int, extra: int) -> None:
    n = successes + extra
    low, high = wilson_lower(successes, n), wilson_upper(successes, n)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= successes / n + 1e-12 <= high + 2e-12


@given(st.integers(1, 400), st.integers(0, 400))
def test_the_lower_bound_is_monotone_in_clean_outcomes(n: int, clean: int) -> None:
    assume(clean < n)
    assert wilson_lower(clean + 1, n) >= wilson_lower(clean, n)
    assert wilson_lower(clean + 1, n + 1) >= wilson_lower(clean, n)  # one more clean outcome never hurts


@given(outcome_lists, st.integers(0, 10), st.floats(0, 100))
def test_never_promotes_without_the_minimum_sample(outcomes: list[str], approvers: int, days: float) -> None:
    evidence = Evidence(tuple(outcomes), approvers, days)
    for level, minimum in ((HITL, RULE.min_samples), (HOTL, RULE.auto_min_samples)):
        verdict = promotion(level, AUTO, evidence, RULE)
        if len(outcomes) < minimum:
            assert verdict.target is None
        if verdict.target is not None:
            assert verdict.target.rank == level.rank + 1  # one level at a time
            assert INCIDENT not in outcomes


@given(outcome_lists)
def test_never_promotes_past_the_ceiling_or_beyond_auto(outcomes: list[str]) -> None:
    evidence = Evidence(tuple(outcomes), 5, 100)
    assert promotion(HITL, HITL, evidence, SMALL).target is None
    assert promotion(HOTL, HOTL, evidence, SMALL).target is None
    assert promotion(AUTO, AUTO, evidence, SMALL).target is None


def test_promotes_exactly_at_the_thresholds() -> None:
    clean = Evidence((CLEAN,) * 5, approvers=1, days=0)
    assert promotion(HITL, AUTO, clean, SMALL).target == HOTL
    assert promotion(HITL, AUTO, Evidence((CLEAN,) * 4, 1, 0), SMALL).target is None
    assert promotion(HITL, AUTO, Evidence((CLEAN,) * 5, 0, 0), SMALL).target is None
    assert promotion(HOTL, AUTO, clean, SMALL).target == AUTO
    unmet = promotion(HITL, AUTO, Evidence((CLEAN,) * 4 + (INCIDENT,), 1, 0), SMALL).unmet
    assert "an incident in the window" in unmet


@given(outcome_lists, st.sampled_from([HITL, HOTL, AUTO]), st.booleans())
def test_an_incident_always_demotes_to_hitl_and_freezes(
    outcomes: list[str], level: AutonomyLevel, probation: bool
) -> None:
    result = demotion(level, [*outcomes, INCIDENT], RULE, in_probation=probation)
    assert result is not None
    assert (result.to, result.freeze) == (HITL, True)


@given(st.lists(st.sampled_from([CLEAN, REJECTED, VETOED]), min_size=1, max_size=40), st.sampled_from([HOTL, AUTO]))
def test_three_of_the_last_ten_rejected_or_vetoed_fires_exactly_at_three(
    outcomes: list[str], level: AutonomyLevel
) -> None:
    rule = GraduationConfig(demote_window=1000)
    bad = sum(1 for outcome in outcomes[-10:] if outcome in (REJECTED, VETOED))
    result = demotion(level, outcomes, rule, in_probation=False)
    assert (result is not None) == (bad >= 3)
    if result is not None:
        assert result.to.rank == level.rank - 1


@given(st.sampled_from([VETOED, FAILED]), st.sampled_from([HOTL, AUTO]))
def test_a_veto_or_failure_in_probation_demotes_one_level(latest: str, level: AutonomyLevel) -> None:
    result = demotion(level, [CLEAN, latest], RULE, in_probation=True)
    assert result is not None and result.to.rank == level.rank - 1
    assert demotion(level, [CLEAN, latest], RULE, in_probation=False) is None


def test_the_window_rule_fires_exactly_below_its_bound() -> None:
    rule = GraduationConfig(demote_window=50, demote_below=0.80)
    for clean in range(51):
        outcomes = [CLEAN] * clean + [FAILED] * (50 - clean)
        fires = wilson_lower(clean, 50) < 0.80
        bad_recent = sum(1 for o in outcomes[-10:] if o in (REJECTED, VETOED)) >= 3
        result = demotion(HOTL, outcomes, rule, in_probation=False)
        assert (result is not None) == (fires or bad_recent), clean
    assert demotion(HOTL, [FAILED] * 49, rule, in_probation=False) is None  # not enough outcomes yet


@given(outcome_lists)
def test_nothing_demotes_below_hitl(outcomes: list[str]) -> None:
    result = demotion(HITL, outcomes, RULE, in_probation=True)
    assert result is None or (result.to == HITL and result.freeze)
