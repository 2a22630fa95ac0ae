"""Tests for supervisor.testing: the reference model against the runtime."""

from __future__ import annotations

import functools
import json

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings

from supervisor.testing import (
    Action,
    Puppets,
    Scenario,
    ScenarioChild,
    normalise_trace,
    run_scenario,
    scenarios,
    simulate,
)
from tests.strategies import plain_scenarios


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
