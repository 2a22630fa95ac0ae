"""Tests for the pure restart policy, specs.policy."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import specs
from specs import Restart, Strategy
from specs._policy import RestartWindow
from specs.policy import (
    ChildView,
    ExitAction,
    ExitKind,
    FailedStart,
    FailureVerdict,
    RestartPlan,
    add_restart,
    auto_shutdown_due,
    backoff_delay,
    count_failure,
    exit_action,
    failed_start,
    healthy_after,
    judge_failure,
    plan_restart,
    restart_delay,
    restarts_in_window,
)

from .strategies import (
    backoffs,
    failure_histories,
    failure_kinds,
    failure_policies,
    restart_windows,
)


@pytest.mark.parametrize(
    ("restart", "kind", "action"),
    [
        (Restart.PERMANENT, ExitKind.NORMAL, ExitAction.RESTART),
        (Restart.PERMANENT, ExitKind.SHUTDOWN, ExitAction.RESTART),
        (Restart.PERMANENT, ExitKind.ABNORMAL, ExitAction.RESTART),
        (Restart.TRANSIENT, ExitKind.NORMAL, ExitAction.KEEP),
        (Restart.TRANSIENT, ExitKind.SHUTDOWN, ExitAction.KEEP),
        (Restart.TRANSIENT, ExitKind.ABNORMAL, ExitAction.RESTART),
        (Restart.TEMPORARY, ExitKind.NORMAL, ExitAction.REMOVE),
        (Restart.TEMPORARY, ExitKind.SHUTDOWN, ExitAction.REMOVE),
        (Restart.TEMPORARY, ExitKind.ABNORMAL, ExitAction.REMOVE),
    ],
)
def test_exit_action_table(restart: Restart, kind: ExitKind, action: ExitAction) -> None:
    """exit_action is OTP's do_restart/3 table."""
    assert exit_action(restart, kind) is action


def test_intensity_zero_gives_up_on_first_restart() -> None:
    """With intensity 0 the first restart is refused."""
    assert add_restart((), 10.0, intensity=0, period=5) == ((10.0,), False)


def test_intensity_allows_exactly_intensity_restarts() -> None:
    """intensity=2: the first two restarts in a window go ahead, the third gives up."""
    window: tuple[float, ...] = ()
    verdicts = []
    for now in (1.0, 2.0, 3.0):
        window, allowed = add_restart(window, now, intensity=2, period=5)
        verdicts.append(allowed)
    assert verdicts == [True, True, False]


def test_restart_exactly_period_ago_still_counts() -> None:
    """The window is inclusive: a restart exactly `period` seconds ago counts."""
    window, allowed = add_restart((5.0,), 10.0, intensity=1, period=5)
    assert (window, allowed) == ((10.0, 5.0), False)


def test_restart_just_over_period_ago_has_expired() -> None:
    """A restart more than `period` seconds ago no longer counts."""
    window, allowed = add_restart((4.999,), 10.0, intensity=1, period=5)
    assert (window, allowed) == ((10.0,), True)


@given(restart_windows, st.floats(100, 200), st.integers(0, 5), st.floats(0.5, 50))
def test_window_holds_only_recent_restarts(
    window: tuple[float, ...], now: float, intensity: int, period: float
) -> None:
    """The new window is `now` plus exactly the old restarts at or after now - period."""
    new, allowed = add_restart(window, now, intensity=intensity, period=period)
    assert new[0] == now
    assert list(new[1:]) == [t for t in window if t >= now - period]
    assert allowed == (len(new) <= intensity)


@given(
    st.lists(st.floats(0, 1e6, allow_subnormal=False), max_size=40),
    st.integers(0, 10),
    st.floats(0, 1e4),
)
def test_restart_window_agrees_with_add_restart(
    times: list[float], intensity: int, period: float
) -> None:
    """RestartWindow gives add_restart's verdict and holds its window, restart after restart."""
    reference: tuple[float, ...] = ()
    window = RestartWindow()
    for now in sorted(times):
        would = window.allows(now, intensity=intensity, period=period)
        reference, expected = add_restart(reference, now, intensity=intensity, period=period)
        assert window.add(now, intensity=intensity, period=period) is expected is would
        assert list(window) == list(reversed(reference))


def test_restart_window_prunes_from_the_left() -> None:
    """A window with many restarts in it keeps only those at or after now - period."""
    window = RestartWindow(float(t) for t in range(100_000))
    assert window.add(100_000.0, intensity=10, period=4.0)
    assert list(window) == [99_996.0, 99_997.0, 99_998.0, 99_999.0, 100_000.0]


def _views(*spec: tuple[str, Restart, bool]) -> list[ChildView]:
    return [ChildView(*s) for s in spec]


P, T, X = Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY


def test_one_for_one_plan() -> None:
    """one_for_one restarts only the failed child."""
    assert plan_restart(Strategy.ONE_FOR_ONE, (), "b") == RestartPlan((), ("b",), ())


def test_rest_for_one_plan() -> None:
    """rest_for_one stops the later children newest first, then starts from the failed one."""
    children = _views(("a", P, True), ("b", P, False), ("c", P, True), ("d", P, True))
    assert plan_restart(Strategy.REST_FOR_ONE, children, "b") == RestartPlan(
        stop=("d", "c"), start=("b", "c", "d"), remove=()
    )


def test_one_for_all_plan() -> None:
    """one_for_all stops every other child newest first, then starts all in order."""
    children = _views(("a", P, True), ("b", P, False), ("c", P, True))
    assert plan_restart(Strategy.ONE_FOR_ALL, children, "b") == RestartPlan(
        stop=("c", "a"), start=("a", "b", "c"), remove=()
    )


def test_group_restart_removes_temporary_bystanders() -> None:
    """A running temporary child caught in a group restart is stopped and never started again."""
    children = _views(("a", P, True), ("b", P, False), ("t", X, True), ("d", P, True))
    assert plan_restart(Strategy.REST_FOR_ONE, children, "b") == RestartPlan(
        stop=("d", "t"), start=("b", "d"), remove=("t",)
    )


def test_group_restart_starts_stopped_siblings() -> None:
    """Children that were not running (terminated, transient ended) are started again."""
    children = _views(("a", P, True), ("b", T, False), ("c", P, False), ("d", P, True))
    plan = plan_restart(Strategy.ONE_FOR_ALL, children, "d")
    assert plan == RestartPlan(stop=("a",), start=("a", "b", "c", "d"), remove=())


def test_plan_for_unknown_child() -> None:
    """Planning a group restart for a child that is not there is a KeyError."""
    with pytest.raises(KeyError):
        plan_restart(Strategy.ONE_FOR_ALL, _views(("a", P, True)), "zz")


@given(
    st.sampled_from([Strategy.REST_FOR_ONE, Strategy.ONE_FOR_ALL]),
    st.lists(st.tuples(st.sampled_from([P, T, X]), st.booleans()), min_size=1, max_size=8),
    st.data(),
)
def test_plans_are_ordered(
    strategy: Strategy, shape: list[tuple[Restart, bool]], data: st.DataObject
) -> None:
    """Stops are running children in reverse start order; starts are in start order."""
    children = [ChildView(f"c{i}", r, running) for i, (r, running) in enumerate(shape)]
    failed = data.draw(st.sampled_from(children)).id
    children = [ChildView(c.id, c.restart, c.running and c.id != failed) for c in children]
    plan = plan_restart(strategy, children, failed)
    order = [c.id for c in children]
    assert list(plan.stop) == sorted(plan.stop, key=order.index, reverse=True)
    assert list(plan.start) == sorted(plan.start, key=order.index)
    running = {c.id for c in children if c.running}
    assert set(plan.stop) <= running
    assert failed in plan.start
    assert not set(plan.remove) & set(plan.start)


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    """Delays grow by wait_exp_base from wait_initial and stop at wait_max."""
    backoff = specs.Backoff(wait_initial=1, wait_max=10, wait_jitter=0, wait_exp_base=2)
    assert [backoff_delay(backoff, n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@given(backoffs, st.integers(1, 2000), st.integers(0, 2**32))
def test_backoff_stays_within_bounds(backoff: specs.Backoff, failures: int, seed: int) -> None:
    """A delay is never above wait_max and never below the jitter-free value (capped)."""
    delay = backoff_delay(backoff, failures, random.Random(seed))
    assert 0 <= delay <= backoff.wait_max
    try:
        floor = backoff.wait_initial * backoff.wait_exp_base ** (failures - 1)
    except OverflowError:
        floor = backoff.wait_max
    assert delay >= min(backoff.wait_max, floor)


def test_backoff_rejects_zero_failures() -> None:
    """The failure count starts at 1."""
    with pytest.raises(ValueError, match="failures"):
        backoff_delay(specs.Backoff(), 0)


@pytest.mark.parametrize(
    ("mode", "significant", "others", "due"),
    [
        (specs.NEVER, True, False, False),
        (specs.ANY_SIGNIFICANT, False, False, False),
        (specs.ANY_SIGNIFICANT, True, True, True),
        (specs.ALL_SIGNIFICANT, True, True, False),
        (specs.ALL_SIGNIFICANT, True, False, True),
    ],
)
def test_auto_shutdown_due(
    mode: specs.AutoShutdown, significant: bool, others: bool, due: bool
) -> None:
    """auto_shutdown_due follows EEP 56's any/all significant rules."""
    siblings = [ChildView("other", Restart.PERMANENT, running=others, significant=True)]
    assert auto_shutdown_due(mode, significant=significant, siblings=siblings) is due


@pytest.mark.parametrize(
    ("running", "restarting", "significant", "due"),
    [
        (False, True, True, False),
        (True, False, True, False),
        (False, False, True, True),
        (True, False, False, True),
    ],
)
def test_all_significant_waits_for_live_significant_siblings(
    running: bool, restarting: bool, significant: bool, due: bool
) -> None:
    """ALL_SIGNIFICANT: only a significant sibling running or restarting keeps the supervisor up."""
    sibling = ChildView("s", Restart.PERMANENT, running, restarting, significant)
    assert auto_shutdown_due(specs.ALL_SIGNIFICANT, significant=True, siblings=[sibling]) is due


def test_restarts_in_window() -> None:
    """restarts_in_window counts restarts at or after now - period."""
    assert restarts_in_window((9.0, 5.0, 4.0), 10.0, 5.0) == 2


@pytest.mark.parametrize(
    ("last_run", "failures"),
    [(0.0, 4), (9.999, 4), (10.0, 1), (50.0, 1)],
)
def test_count_failure_resets_after_a_healthy_run(last_run: float, failures: int) -> None:
    """A run of at least reset_after seconds starts the failure count again."""
    backoff = specs.Backoff(reset_after=10.0)
    assert count_failure(3, last_run=last_run, backoff=backoff) == failures


def test_count_failure_without_backoff_never_resets() -> None:
    """Without a backoff, however long the child ran, the count only grows."""
    assert count_failure(3, last_run=1e9, backoff=None) == 4


@pytest.mark.parametrize(
    ("backoff", "hint", "delay"),
    [
        (None, None, 0.0),
        (None, 7.0, 7.0),
        (specs.Backoff(wait_initial=2, wait_jitter=0), None, 2.0),
        (specs.Backoff(wait_initial=2, wait_jitter=0), 0.0, 0.0),
        (specs.Backoff(wait_initial=2, wait_jitter=0), 30.0, 30.0),
    ],
)
def test_restart_delay_prefers_the_failures_own(
    backoff: specs.Backoff | None, hint: float | None, delay: float
) -> None:
    """A failure's own delay beats the backoff; with neither, the restart is at once."""
    assert restart_delay(backoff, 1, hint=hint) == delay


def test_failed_start_leaves_the_rest_of_the_group_stopped() -> None:
    """A start that fails midway is retried; the children after it wait for the retry."""
    assert failed_start(("a", "b", "c", "d"), "b") == FailedStart(retry="b", stopped=("c", "d"))
    assert failed_start(("a",), "a") == FailedStart(retry="a", stopped=())


def test_failed_start_of_a_child_not_in_the_group() -> None:
    """A failed child that is not in the group's start order is a ValueError."""
    with pytest.raises(ValueError, match="zz"):
        failed_start(("a",), "zz")


@pytest.mark.parametrize("kind", [ExitKind.NORMAL, ExitKind.SHUTDOWN])
def test_dynamic_transient_child_that_ends_normally_is_forgotten(kind: ExitKind) -> None:
    """A dynamic supervisor keeps no spec per child: a transient one that ends is removed."""
    assert exit_action(Restart.TRANSIENT, kind, dynamic=True) is ExitAction.REMOVE
    assert exit_action(Restart.TRANSIENT, ExitKind.ABNORMAL, dynamic=True) is ExitAction.RESTART


# ------------------------------------------------ decisions per failure kind

_ACTIONS = st.sampled_from([ExitAction.RESTART, ExitAction.KEEP, ExitAction.REMOVE])


def _judge(
    policy: specs.FailurePolicy,
    kind: str,
    action: ExitAction = ExitAction.RESTART,
    budgets: dict[str, tuple[float, ...]] | None = None,
    *,
    now: float = 100.0,
    last_run: float = 0.0,
    backoff: specs.Backoff | None = None,
) -> FailureVerdict:
    return judge_failure(
        policy, kind, action, budgets or {}, now=now, last_run=last_run, backoff=backoff, period=5
    )


@given(failure_kinds, _ACTIONS, st.none() | st.integers(1, 5))
def test_restart_rule_within_budget_keeps_the_restart_types_answer(
    kind: str, action: ExitAction, budget: int | None
) -> None:
    """A RESTART rule leaves exit_action's answer while its budget lasts."""
    policy = specs.FailurePolicy(default=specs.KindRule(budget=budget))
    assert _judge(policy, kind, action).action is action


@given(failure_kinds, _ACTIONS)
def test_stay_down_holds_whatever_the_restart_type(kind: str, action: ExitAction) -> None:
    """STAY_DOWN keeps the child stopped; only a TEMPORARY child is still forgotten."""
    policy = specs.FailurePolicy(default=specs.KindRule(decision=specs.Decision.STAY_DOWN))
    expected = ExitAction.REMOVE if action is ExitAction.REMOVE else ExitAction.STAY_DOWN
    assert _judge(policy, kind, action).action is expected


@given(failure_kinds, _ACTIONS)
def test_escalate_holds_whatever_the_restart_type(kind: str, action: ExitAction) -> None:
    """ESCALATE gives up, whatever the restart type said."""
    policy = specs.FailurePolicy(default=specs.KindRule(decision=specs.Decision.ESCALATE))
    assert _judge(policy, kind, action).action is ExitAction.ESCALATE


@given(failure_policies, failure_histories, st.none() | backoffs)
def test_judge_failure_counts_consecutive_failures_per_kind_in_its_window(
    policy: specs.FailurePolicy,
    history: list[tuple[str, float, float]],
    backoff: specs.Backoff | None,
) -> None:
    """The count is this kind's failures since the last healthy run, within its window.

    Checked against a direct count over the whole history; a spent budget is
    answered by ``when_spent``, else the rule's decision holds.
    """
    healthy = healthy_after(policy, backoff, 5)
    budgets: dict[str, tuple[float, ...]] = {}
    seen: list[tuple[str, float]] = []  # (kind, time) since the last healthy run
    now = 0.0
    for kind, gap, ran in history:
        now += gap
        if ran >= healthy:
            seen = []
        seen.append((kind, now))
        rule = policy.rule(kind)
        expected = sum(1 for k, t in seen if k == kind and t >= now - rule.window)
        verdict = judge_failure(
            policy,
            kind,
            ExitAction.RESTART,
            budgets,
            now=now,
            last_run=ran,
            backoff=backoff,
            period=5,
        )
        budgets = verdict.budgets
        assert verdict.failures == expected
        window = budgets[kind]
        assert list(window) == sorted(window, reverse=True)
        spent = rule.decision is specs.Decision.RESTART and (
            rule.budget is not None and expected > rule.budget
        )
        assert verdict.spent is spent
        decision = rule.when_spent if spent else rule.decision
        assert (
            verdict.action
            is {
                specs.Decision.RESTART: ExitAction.RESTART,
                specs.Decision.STAY_DOWN: ExitAction.STAY_DOWN,
                specs.Decision.ESCALATE: ExitAction.ESCALATE,
            }[decision]
        )


def test_a_budget_of_n_restarts_n_times_then_stays_down() -> None:
    """budget=3: three failures in a row restart, the fourth stays down."""
    policy = specs.FailurePolicy(rules={"proxy": specs.KindRule(budget=3)})
    budgets: dict[str, tuple[float, ...]] = {}
    actions = []
    for now in range(4):
        verdict = _judge(policy, "proxy", budgets=budgets, now=float(now))
        budgets = verdict.budgets
        actions.append(verdict.action)
    assert actions == [ExitAction.RESTART] * 3 + [ExitAction.STAY_DOWN]


def test_a_healthy_run_clears_every_kinds_budget() -> None:
    """A run of healthy_after seconds forgets the earlier failures of every kind."""
    policy = specs.FailurePolicy(reset_after=10)
    budgets = {"proxy": (1.0, 2.0), "auth": (3.0,)}
    verdict = _judge(policy, "proxy", budgets=budgets, now=50, last_run=10)
    assert verdict.budgets == {"proxy": (50,)}
    assert verdict.failures == 1


def test_the_kinds_backoff_beats_the_policys_and_the_supervisors() -> None:
    """A rule's backoff, else the policy's, else the supervisor's paces the restart."""
    own, policys, sups = (specs.Backoff(wait_initial=i, wait_max=9) for i in (1, 2, 3))
    policy = specs.FailurePolicy(rules={"a": specs.KindRule(backoff=own)}, backoff=policys)
    assert _judge(policy, "a", backoff=sups).backoff is own
    assert _judge(policy, "b", backoff=sups).backoff is policys
    assert _judge(specs.FailurePolicy(), "b", backoff=sups).backoff is sups


def test_healthy_after_falls_back_from_policy_to_backoff_to_period() -> None:
    """healthy_after: the policy's reset_after, its backoff's, the supervisor's, the period."""
    backoff = specs.Backoff(reset_after=30)
    assert healthy_after(specs.FailurePolicy(reset_after=7), backoff, 5) == 7
    assert healthy_after(specs.FailurePolicy(backoff=specs.Backoff()), backoff, 5) == 60
    assert healthy_after(specs.FailurePolicy(), backoff, 5) == 30
    assert healthy_after(None, None, 5) == 5


@pytest.mark.parametrize(
    ("kind", "restarts", "then"),
    [
        ("flood_wait", 5, ExitAction.STAY_DOWN),
        ("rate_limited", 5, ExitAction.STAY_DOWN),
        ("proxy", 3, ExitAction.STAY_DOWN),
        ("connection", 3, ExitAction.STAY_DOWN),
        ("temporary", 3, ExitAction.STAY_DOWN),
        ("unknown", 2, ExitAction.STAY_DOWN),
        ("something_new", 2, ExitAction.STAY_DOWN),
        ("auth", 0, ExitAction.STAY_DOWN),
        ("conflict", 0, ExitAction.STAY_DOWN),
    ],
)
def test_field_report_policy_table(kind: str, restarts: int, then: ExitAction) -> None:
    """FIELD_REPORT_POLICY restarts each kind its budget's times in a row, then stays down."""
    budgets: dict[str, tuple[float, ...]] = {}
    actions = []
    for now in range(restarts + 1):
        verdict = _judge(specs.FIELD_REPORT_POLICY, kind, budgets=budgets, now=float(now))
        budgets = verdict.budgets
        actions.append(verdict.action)
    assert actions == [ExitAction.RESTART] * restarts + [then]


def test_field_report_policy_backs_off_1_2_4_up_to_300() -> None:
    """The preset's delays double from 1 s and stop at 300 s (plus jitter)."""
    backoff = specs.FIELD_REPORT_POLICY.backoff
    assert backoff is not None
    rng = random.Random(0)
    delays = [backoff_delay(backoff, n, rng) for n in (1, 2, 3, 20)]
    assert [math.floor(d) for d in delays[:3]] == [1, 2, 4]
    assert delays[3] == 300
