"""Hypothesis strategies for specs and fault schedules."""

from __future__ import annotations

from hypothesis import strategies as st

from ._scenario import Action, Scenario, ScenarioChild

_RESTARTS = ("permanent", "transient", "temporary")
_REASONS = ("abnormal", "abnormal", "normal", "shutdown", "shutdown_r")
_STATIC = ("one_for_one", "rest_for_one", "one_for_all")


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    strategies: tuple[str, ...] = (*_STATIC, "simple_one_for_one"),
    max_children: int = 6,
    max_actions: int = 12,
    api: bool = True,
) -> Scenario:
    """Draw a supervisor and a fault schedule.

    Action times fall on half seconds (0.5, 1.5, ...) and periods are whole
    seconds, so a whole-second clock (Erlang's) and a float clock agree on
    every intensity-window comparison; boundary cases (a restart exactly
    ``period`` seconds ago) are drawn often.
    """
    strategy = draw(st.sampled_from(strategies))
    dynamic = strategy == "simple_one_for_one"
    count = 1 if dynamic else draw(st.integers(1, max_children))
    children = tuple(
        ScenarioChild(id=f"c{i + 1}", restart=draw(st.sampled_from(_RESTARTS)))
        for i in range(count)
    )
    names = [c.id for c in children]
    extra_names = [f"n{i + 1}" for i in range(3)]
    ops = ["crash", "crash", "crash", "fail_starts"]
    if api:
        ops += ["terminate_child", "restart_child", "delete_child", "start_child"]
    if dynamic:
        ops = ["start_child", "start_child", "crash", "crash", "crash", "fail_starts"]
        if api:
            ops.append("terminate_child")
    steps = draw(st.lists(st.integers(0, 2), min_size=1, max_size=max_actions))
    actions = []
    second = 0
    started = 0  # dynamic children get a fresh name each, as OTP children have no ids
    for step in steps:
        second += step
        op = draw(st.sampled_from(ops))
        if dynamic:
            if op == "start_child":
                started += 1
                child = f"w{started}"
            else:
                child = draw(st.sampled_from([f"w{i}" for i in range(1, started + 2)]))
        else:
            pool = names + (extra_names if op == "start_child" else [])
            child = draw(st.sampled_from(pool))
        actions.append(
            Action(
                at=second + 0.5,
                op=op,  # type: ignore[arg-type]
                child=child,
                reason=draw(st.sampled_from(_REASONS)),
                count=draw(st.integers(1, 3)),
                restart=draw(st.sampled_from(_RESTARTS)),
            )
        )
    init_fail: tuple[tuple[str, int], ...] = ()
    if not dynamic and draw(st.integers(0, 9)) == 0:
        init_fail = ((draw(st.sampled_from(names)), 1),)
    return Scenario(
        strategy=strategy,  # type: ignore[arg-type]
        intensity=draw(st.integers(0, 5)),
        period=draw(st.integers(1, 5)),
        children=children,
        actions=tuple(actions),
        init_fail=init_fail,
    )
