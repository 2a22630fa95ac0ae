"""Tests for supervisor.testing: the reference model against the runtime."""

from __future__ import annotations

import functools
import json
import math

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

import specs
from examples.telegram_bridge._tree import Bridge, Endpoints, build_tree
from supervisor.testing import (
    Action,
    Fault,
    FaultSchedule,
    Puppets,
    Scenario,
    ScenarioChild,
    Step,
    TreeMachine,
    TreeRun,
    Unmodelled,
    check_tree,
    fault_schedules,
    normalise_trace,
    run_scenario,
    scenarios,
    simulate,
    trace_diff,
)
from tests.strategies import _handshake_leaf, plain_scenarios, real_trees


def run_on_runtime(scenario: Scenario, *, plain: bool = False) -> list[list[str]]:
    """Run a scenario on the runtime under a fresh autojump MockClock."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(functools.partial(run_scenario, scenario, plain=plain), clock=clock)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_runtime_trace_equals_model_trace(scenario: Scenario) -> None:
    """For any tree and fault schedule, the runtime's trace is the model's."""
    model, real = simulate(scenario), run_on_runtime(scenario)
    if scenario.dynamic:
        model, real = normalise_trace(model), normalise_trace(real)
    assert real == model, json.dumps(scenario.to_json())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_scenarios)
def test_plain_children_start_in_the_models_order(scenario: Scenario) -> None:
    """Children without task_status: their code starts in the model's start order, always."""
    # the start lines come from the children's own code as it begins
    model, real = simulate(scenario), run_on_runtime(scenario, plain=True)
    if scenario.dynamic:
        model, real = normalise_trace(model), normalise_trace(real)
    assert real == model, json.dumps(scenario.to_json())


def test_model_gives_up_after_intensity() -> None:
    """The model's trace for 3 crashes with intensity 2 ends in a give-up (OTP oracle)."""
    scenario = Scenario(
        strategy="one_for_one",
        intensity=2,
        period=5,
        children=(ScenarioChild(id="c1"), ScenarioChild(id="c2")),
        actions=tuple(Action(at=t, op="crash", child="c1") for t in (0.5, 1.5, 2.5)),
    )
    assert simulate(scenario) == [
        ["start", "c1"],
        ["start", "c2"],
        ["start", "c1"],
        ["start", "c1"],
        ["gave_up", "c1"],
        ["stop", "c2"],
        ["sup_exit", "gave_up"],
    ]


def test_model_start_failure_rolls_back() -> None:
    """The model stops started children in reverse when one fails to start (OTP oracle)."""
    scenario = Scenario(
        strategy="one_for_one",
        intensity=1,
        period=5,
        children=tuple(ScenarioChild(id=f"c{i}") for i in range(1, 5)),
        init_fail=(("c3", 1),),
    )
    assert simulate(scenario) == [
        ["start", "c1"],
        ["start", "c2"],
        ["start_failed", "c3"],
        ["stop", "c2"],
        ["stop", "c1"],
        ["sup_exit", "failed_to_start"],
    ]


def test_scenario_json_round_trip() -> None:
    """A scenario survives to_json/from_json unchanged."""
    scenario = Scenario(
        strategy="rest_for_one",
        intensity=3,
        period=2,
        children=(ScenarioChild(id="a", restart="transient"),),
        actions=(
            Action(at=0.5, op="crash", child="a", reason="shutdown_r"),
            Action(at=1.5, op="fail_starts", child="a", count=2),
            Action(at=2.5, op="start_child", child="n1", restart="temporary"),
        ),
        init_fail=(("a", 1),),
    )
    assert Scenario.from_json(json.loads(json.dumps(scenario.to_json()))) == scenario


def test_normalise_trace_sorts_runs_of_stops() -> None:
    """normalise_trace orders each run of stops, leaving everything else in place."""
    trace = [["start", "b"], ["stop", "b"], ["stop", "a"], ["sup_exit", "stopped"]]
    assert normalise_trace(trace) == [
        ["start", "b"],
        ["stop", "a"],
        ["stop", "b"],
        ["sup_exit", "stopped"],
    ]


def test_puppet_exit_of_a_stopped_worker_reports_false() -> None:
    """Puppets.exit says whether an incarnation was there to receive the cue."""
    assert Puppets().exit("nobody") is False


# ------------------------------------------------------------ a user's own tree

_TREE_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@_TREE_SETTINGS
@given(st.data())
def test_model_predicts_the_runtime_on_random_trees(data: st.DataObject) -> None:
    """For any real tree and fault schedule, the runtime's trace is the one the model predicts."""
    tree = data.draw(real_trees())
    check_tree(tree, data.draw(fault_schedules(tree)))


def _demo_tree() -> specs.SupervisorSpec:
    endpoints = Endpoints("ws://127.0.0.1:9/", "http://127.0.0.1:9/bot/getUpdates", [])
    return build_tree(endpoints, Bridge())


_DEMO = _demo_tree()


@_TREE_SETTINGS
@given(fault_schedules(_DEMO))
@example(  # the bot terminated while the relay's restart waits out its backoff
    FaultSchedule(
        faults=(
            Fault(at=0.25, op="exit", target="bridge/relay/exchange", reason="abnormal"),
            Fault(at=0.5, op="terminate_child", target="bridge/relay", child="bot"),
        ),
        cleanup=(("bridge/relay/exchange", 1.0), ("bridge/relay/bot", 1.0)),
        seed=0,
        end=29.85,
    )
)
def test_demo_tree_recovers_as_the_model_says(schedule: FaultSchedule) -> None:
    """The demo's real tree: every drawn schedule runs as predicted; the relay restarts in order."""

    # an API call on the bot (terminate_child, delete_child) takes it out of the group
    touched = min((f.at for f in schedule.faults if f.child == "bot"), default=math.inf)

    def bot_follows_exchange(run: TreeRun) -> None:
        # rest_for_one: whenever the exchange restarts, the bot restarts right after it
        relay = run.steps(supervisor="bridge/relay")
        for i, step in enumerate(relay):
            if step.event == "restart" and step.child == "exchange" and step.time < touched:
                assert relay[i + 1].child == "bot", relay[i : i + 2]

    check_tree(_DEMO, schedule, invariants=bot_follows_exchange)


def test_fault_schedules_reach_escalation_in_the_demo_tree() -> None:
    """Drawn schedules for the demo tree include accounts giving up and the pool restarted."""

    def escalates(schedule: FaultSchedule) -> bool:
        trace = simulate(_DEMO, schedule)
        return any(s.event == "gave_up" and s.supervisor == "accounts" for s in trace)

    # a search, not a sample: derandomized, so the answer does not depend on the seed
    found = find(
        fault_schedules(_DEMO),
        escalates,
        settings=settings(
            max_examples=2000,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert escalates(found)


def test_a_wrong_restart_type_is_caught_by_an_invariant() -> None:
    """A tree whose worker is TEMPORARY where the user asserts it always comes back fails."""
    tree = specs.SupervisorSpec(
        children=[specs.ChildSpec(id="db", start=_handshake_leaf, restart=specs.TEMPORARY)]
    )

    def db_always_back(run: TreeRun) -> None:
        for step in run.steps("exit", child="db"):
            assert step.detail.endswith(":restart"), f"db is not restarted after {step}"

    schedule = FaultSchedule(faults=(Fault(at=0.5, op="exit", target="supervisor/db"),), end=2)
    with pytest.raises(AssertionError, match="db is not restarted"):
        check_tree(tree, schedule, invariants=db_always_back)


def test_a_runtime_that_departs_from_the_model_is_reported_as_a_diff() -> None:
    """A trace that differs from the model's is reported at its first divergence."""
    tree = specs.SupervisorSpec(children=[specs.ChildSpec(id="a", start=_handshake_leaf)])
    schedule = FaultSchedule(faults=(Fault(at=0.5, op="exit", target="supervisor/a"),), end=2)
    model = simulate(tree, schedule)
    wrong = [*model[:2], Step(0.5, "supervisor", "gave_up", "a"), *model[3:]]
    report = trace_diff(model, wrong, schedule=schedule)
    assert "part at step 2" in report
    assert "- model:       0.500  supervisor  restart a" in report
    assert "+ runtime:     0.500  supervisor  gave_up a" in report


def test_backoff_and_a_failures_own_delay_in_the_model() -> None:
    """The model waits the backoff, and a failure's own delay instead when it asks for one."""
    tree = specs.SupervisorSpec(
        backoff=specs.Backoff(wait_initial=1.0, wait_jitter=0.0, reset_after=specs.INFINITY),
        children=[specs.ChildSpec(id="a", start=_handshake_leaf)],
    )
    schedule = FaultSchedule(
        faults=(
            Fault(at=0.5, op="exit", target="supervisor/a"),
            Fault(at=2.5, op="exit", target="supervisor/a", delay=0.25),
        ),
        end=4,
    )
    run = check_tree(tree, schedule)
    assert [(s.time, s.detail) for s in run.steps("scheduled")] == [(0.5, "1.0"), (2.5, "0.25")]
    assert [s.time for s in run.restarts("supervisor/a")] == [1.5, 2.75]


def test_unmodelled_schedule_is_refused() -> None:
    """Two restarts due at one instant in one supervisor: the model says it cannot tell."""
    tree = specs.SupervisorSpec(
        backoff=specs.Backoff(wait_initial=1.0, wait_jitter=0.0),
        children=[specs.ChildSpec(id=c, start=_handshake_leaf) for c in "ab"],
    )
    both = tuple(
        Fault(at=0.5 + i * 0.0, op="exit", target=f"supervisor/{c}") for i, c in enumerate("ab")
    )
    with pytest.raises(Unmodelled):
        simulate(tree, FaultSchedule(faults=both, end=3))


TestDemoTreeMachine = TreeMachine.for_spec(
    _DEMO,
    settings=settings(
        max_examples=60,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ),
)
TestDemoTreeMachine.__doc__ = (
    "Faults, API calls and time interleaved on the demo's tree: runtime = model."
)
