"""README: property-test the README's first tree (the text the README shows)."""

from itertools import pairwise

import trio
from hypothesis import given, settings

import specs
from supervisor.testing import check_tree, fault_schedules


async def database(task_status=trio.TASK_STATUS_IGNORED): ...  # yours: puppets stand in


async def poller(url): ...


tree = specs.SupervisorSpec(
    strategy=specs.REST_FOR_ONE,
    intensity=3,
    period=5.0,
    children=[
        specs.ChildSpec(id="db", start=database),
        specs.ChildSpec(id="poll", start=poller, args=("https://example.org",)),
    ],
)


def poll_restarts_right_after_db(run):  # your invariant, over the trace
    steps = run.steps(supervisor="supervisor")
    for step, after in pairwise(steps):
        if (step.event, step.child) == ("restart", "db"):
            assert after.child == "poll", after


@settings(max_examples=100, deadline=None)
@given(fault_schedules(tree, api=False))  # exits and failed starts: no deleted poll
def test_tree(schedule):
    """The README's first tree: as the model predicts, poll restarted after db."""
    check_tree(tree, schedule, invariants=poll_restarts_right_after_db)


if __name__ == "__main__":  # pytest collects the test; as a script, it runs it
    test_tree()
