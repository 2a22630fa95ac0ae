"""Testing strategies for Hypothesis-based tests (shared by every test module)."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

import specs
from supervisor.testing import Scenario
from supervisor.testing import scenarios as scenarios


async def _idle(*args: Any) -> None:
    """A child body for specs that are never run."""


child_ids = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=8)
restarts = st.sampled_from(list(specs.Restart))
shutdowns = st.one_of(
    st.just(specs.BRUTAL_KILL),
    st.just(specs.INFINITY),
    st.floats(min_value=0, max_value=3600, allow_nan=False),
)


@st.composite
def child_specs(draw: st.DrawFn) -> specs.ChildSpec:
    """A valid worker ChildSpec."""
    restart = draw(restarts)
    return specs.ChildSpec(
        id=draw(child_ids), start=_idle, restart=restart, shutdown=draw(shutdowns)
    )


backoffs = st.builds(
    lambda initial, extra, jitter, base, reset: specs.Backoff(
        wait_initial=initial,
        wait_max=initial + extra,
        wait_jitter=jitter,
        wait_exp_base=base,
        reset_after=reset,
    ),
    st.floats(0, 100),
    st.floats(0, 1000),
    st.floats(0, 10),
    st.floats(1, 10),
    st.floats(0.001, 1000),
)

#: Restart times, newest first, as a supervisor records them.
restart_windows = st.lists(st.floats(0, 100), max_size=8).map(
    lambda times: tuple(sorted(times, reverse=True))
)

__all__ = ["backoffs", "child_specs", "restart_windows", "scenarios", "shutdowns"]


def without_start_failures(scenario: Scenario) -> Scenario:
    """The scenario with its scripted start failures left out.

    What runs on plain children (``run_scenario(..., plain=True)``): a child
    without ``task_status`` cannot fail to start.
    """
    actions = tuple(a for a in scenario.actions if a.op != "fail_starts")
    return attrs.evolve(scenario, actions=actions, init_fail=())


#: Scenarios for plain children: any tree and fault schedule, no start failures.
plain_scenarios = scenarios().map(without_start_failures)
