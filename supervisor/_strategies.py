"""Hypothesis strategies for specs and fault schedules."""

from __future__ import annotations

import math

import attrs
from hypothesis import strategies as st

from specs import BRUTAL_KILL, ChildSpec, DynamicSupervisorSpec, SupervisorSpec
from specs._spec import accepts_task_status

from ._model import Unmodelled, simulate_tree
from ._scenario import Action, Fault, FaultSchedule, Scenario, ScenarioChild

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


# ------------------------------------------------------------ a user's own tree


@attrs.frozen
class _Leaf:
    path: str
    handshake: bool
    grace: float
    bounded: bool  # under a subtree with a finite grace: its cleanup stays 0


@attrs.define
class _TreeMap:
    """What faults a tree can take: its leaves, its supervisors and their children."""

    leaves: list[_Leaf] = attrs.Factory(list)
    static: dict[str, list[str]] = attrs.Factory(dict)  # supervisor name -> child ids
    dynamic: dict[str, str] = attrs.Factory(dict)  # supervisor name -> template id
    longest_wait: float = 1.0
    kinds: set[str] = attrs.Factory(set)  # the failure kinds the tree's policies name


def _grace(child: ChildSpec) -> float:
    return 0.0 if child.shutdown is BRUTAL_KILL else float(child.shutdown)


def _map_tree(
    spec: SupervisorSpec | DynamicSupervisorSpec, name: str, tree: _TreeMap, *, bounded: bool
) -> None:
    policy = spec.failure_policy
    backoffs = [spec.backoff]
    if policy is not None:
        tree.kinds.update(kind for kind, _ in policy.rules)
        backoffs += [policy.backoff, policy.default.backoff, *(r.backoff for _, r in policy.rules)]
    for backoff in backoffs:
        if backoff is not None:
            tree.longest_wait = max(tree.longest_wait, backoff.wait_max + backoff.wait_jitter)
    if isinstance(spec, DynamicSupervisorSpec):
        template = spec.template
        tree.dynamic[name] = template.id
        children = [(f"{template.id}-{n}", template) for n in (1, 2, 3)]
    else:
        tree.static[name] = [c.id for c in spec.children]
        children = [(c.id, c) for c in spec.children]
        children += [(new, ChildSpec(id=new, start=_api_leaf)) for new in _NEW_IDS]
    for child_id, child in children:
        start = child.start
        if isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
            if isinstance(spec, DynamicSupervisorSpec) and child_id != f"{child.id}-1":
                continue  # several subtrees stopping at once: the model declines them
            finite = _grace(child) != math.inf
            sub = start.name or f"{name}/{child_id}"
            _map_tree(start, sub, tree, bounded=bounded or finite)
        else:
            handshake = accepts_task_status(start)
            tree.leaves.append(_Leaf(f"{name}/{child_id}", handshake, _grace(child), bounded))


async def _api_leaf(task_status: object = None) -> None:
    """Stands for a child added with ``start_child`` (a puppet, when run)."""


_NEW_IDS = ("n1", "n2")
_STEPS = (0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 3.0)
_DELAYS = (0.25, 1.5, 3.0)
_EXIT_REASONS = ("abnormal", "abnormal", "abnormal", "normal", "shutdown", "shutdown_r")


@st.composite
def _schedules(
    draw: st.DrawFn,
    spec: SupervisorSpec | DynamicSupervisorSpec,
    *,
    max_faults: int,
    api: bool,
) -> FaultSchedule:
    tree = _TreeMap()
    _map_tree(spec, spec.name or "supervisor", tree, bounded=False)
    starters = [leaf for leaf in tree.leaves if leaf.handshake]
    ops = ["exit"] * 6 + (["fail_starts"] if starters else [])
    if api:
        ops += ["api"] * 2
    if tree.dynamic:
        ops += ["dynamic_start"] * 2
    ops.append("burst")
    faults: list[Fault] = []
    at = 0.0
    count = draw(st.integers(0, max_faults))
    while len(faults) < count:
        at += draw(st.sampled_from(_STEPS))
        op = draw(st.sampled_from(ops))
        if op == "burst":  # one leaf crashing again and again: intensity and escalation
            target = draw(st.sampled_from(tree.leaves)).path
            owner = target.rpartition("/")[0]
            if owner in tree.dynamic:
                faults.append(Fault(at=at, op="start_child", target=owner))
                at += 0.25
            for _ in range(draw(st.integers(3, 12))):
                faults.append(Fault(at=at, op="exit", target=target))
                at += 0.25
            continue
        if op == "exit":
            reason = draw(st.sampled_from(_EXIT_REASONS))
            delay = draw(st.sampled_from((None, None, None, *_DELAYS)))
            target = draw(st.sampled_from(tree.leaves)).path
            kind = draw(st.sampled_from([None, *sorted(tree.kinds)])) if tree.kinds else None
            fault = Fault(
                at=at,
                op="exit",
                target=target,
                reason=reason,  # type: ignore[arg-type]
                delay=delay,
                kind=kind,
            )
        elif op == "fail_starts":
            target = draw(st.sampled_from(starters)).path
            fault = Fault(at=at, op="fail_starts", target=target, count=draw(st.integers(1, 3)))
        elif op == "dynamic_start":
            fault = Fault(
                at=at, op="start_child", target=draw(st.sampled_from(sorted(tree.dynamic)))
            )
        else:
            sup = draw(st.sampled_from(sorted([*tree.static, *tree.dynamic])))
            if sup in tree.dynamic:
                n = draw(st.integers(1, 3))
                fault = Fault(
                    at=at, op="terminate_child", target=sup, child=f"{tree.dynamic[sup]}-{n}"
                )
            else:
                call = draw(
                    st.sampled_from(
                        ("start_child", "terminate_child", "restart_child", "delete_child")
                    )
                )
                pool = tree.static[sup] + list(_NEW_IDS)
                fault = Fault(
                    at=at,
                    op=call,  # type: ignore[arg-type]
                    target=sup,
                    child=draw(st.sampled_from(pool)),
                    restart=draw(st.sampled_from(_RESTARTS)),
                )
        faults.append(fault)
    cleanup = []
    for leaf in tree.leaves:
        if leaf.bounded or leaf.grace == 0 or draw(st.integers(0, 3)) != 0:
            continue
        cleanup.append(
            (
                leaf.path,
                0.75 if leaf.grace == math.inf else leaf.grace * draw(st.sampled_from((0.5, 2.0))),
            )
        )
    fails = sum(f.count for f in faults if f.op == "fail_starts")
    margin = (fails + 2) * (tree.longest_wait + max(_DELAYS)) + sum(s for _, s in cleanup)
    return FaultSchedule(
        faults=tuple(faults),
        cleanup=tuple(cleanup),
        seed=draw(st.integers(0, 2**32 - 1)),
        end=at + 1.0 + margin,
    )


def fault_schedules(
    spec: SupervisorSpec | DynamicSupervisorSpec, *, max_faults: int = 20, api: bool = True
) -> st.SearchStrategy[FaultSchedule]:
    """Draw timed faults for ``spec``, a user's real tree.

    Any leaf (dynamic children and children added by ``start_child``
    included) exits with any reason, now and then asking for its own restart
    delay; leaves with ``task_status`` fail their next starts; supervisors get
    API calls and dynamic starts; some leaves take time to clean up when
    stopped (half or twice their grace). Faults fall on a grid of quarter
    seconds; a schedule whose outcome would depend on the order of
    simultaneous events (see :class:`~supervisor.testing.Unmodelled`) is
    never drawn.

    Args:
        spec: The tree, as you run it.
        max_faults: The most faults in one schedule.
        api: Whether to draw API calls (``start_child``, ``terminate_child``, ...).
    """

    def modelled(schedule: FaultSchedule) -> bool:
        try:
            simulate_tree(spec, schedule)
        except Unmodelled:
            return False
        return True

    return _schedules(spec, max_faults=max_faults, api=api).filter(modelled)
