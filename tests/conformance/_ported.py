"""supervisor_SUITE cases (erlang/otp ``lib/stdlib/test/supervisor_SUITE.erl``) as scenarios.

Each SUITE case is written as the scenario that does what the case does, in
the harness's vocabulary (``README.md``). The SUITE's helper children map onto
scenario ops: ``supervisor_1:start_child([error])`` (starts once, then every
start fails) is a ``fail_starts`` with a large count after the first start;
``terminate(SupPid, Pid, Id, Reason)`` is a ``crash``; ``which_children``
checks become API calls whose result says the same thing (a spec kept but not
running: ``start_child`` answers ``already_present``; no spec: ``delete_child``
answers ``not_found``). Times are ``X.5`` seconds; the SUITE's periods are kept.

Phase markers: ``mark(at, label)`` is a ``terminate_child`` of a child that
never exists. It changes nothing and leaves the line
``["api", "terminate_child", "mark:LABEL", "not_found"]`` in every trace, so a
test can look at exactly what one step caused (``phases``).
"""

from __future__ import annotations

from typing import Final

from supervisor.testing import Action, Scenario, ScenarioChild, TraceLine

__all__ = ["MARK", "PORTED", "mark", "phases"]

#: The prefix of a phase marker's child id.
MARK: Final = "mark:"
#: More failing starts than any intensity here allows: "every later start fails".
_ALWAYS: Final = 100


def mark(at: float, label: str) -> Action:
    """A no-op action that labels the trace lines that follow it."""
    return Action(at=at, op="terminate_child", child=f"{MARK}{label}")


def phases(trace: list[TraceLine]) -> dict[str, list[TraceLine]]:
    """Split a trace at its markers: ``{"init": [...], LABEL: [lines after LABEL], ...}``.

    The last phase runs to the end of the trace (``sup_exit`` included).
    """
    result: dict[str, list[TraceLine]] = {"init": []}
    current = result["init"]
    for line in trace:
        if line[:2] == ["api", "terminate_child"] and line[2].startswith(MARK):
            current = result.setdefault(line[2].removeprefix(MARK), [])
            continue
        current.append(line)
    return result


def _children(*specs: str) -> tuple[ScenarioChild, ...]:
    """``"child1"`` is permanent; ``"child2:temporary"`` names the restart type."""
    result = []
    for spec in specs:
        child_id, _, restart = spec.partition(":")
        result.append(ScenarioChild(id=child_id, restart=restart or "permanent"))  # type: ignore[arg-type]
    return tuple(result)


def _crash(at: float, child: str, reason: str = "abnormal") -> Action:
    return Action(at=at, op="crash", child=child, reason=reason)  # type: ignore[arg-type]


def _api(at: float, op: str, child: str, restart: str = "permanent") -> Action:
    return Action(at=at, op=op, child=child, restart=restart)  # type: ignore[arg-type]


def _fail(at: float, child: str, count: int = _ALWAYS) -> Action:
    return Action(at=at, op="fail_starts", child=child, count=count)


def _restart_type(name: str, restart: str) -> tuple[str, Scenario]:
    """permanent_/transient_/temporary_ normal/shutdown/abnormal: one child added with start_child.

    The child exits by itself (twice for ``shutdown``: ``shutdown`` and
    ``{shutdown, some_info}``); each exit is followed by a marker, then a
    probe of the child's spec: ``start_child`` (``already_started`` if it runs
    again, ``already_present`` if its spec is kept, ``ok`` if it was forgotten).
    """
    kind = name.split("_")[1]
    reasons = ["shutdown", "shutdown_r"] if kind == "shutdown" else [kind]
    actions = [_api(0.5, "start_child", "child1", restart)]
    for number, reason in enumerate(reasons, start=1):
        at = number + 0.5
        actions += [
            mark(at, f"exit{number}"),
            _crash(at, "child1", reason),
            _api(at, "start_child", "child1", restart),
        ]
        if restart == "transient":
            # transient_shutdown: restart_child brings it back for the next exit
            actions.append(_api(at, "restart_child", "child1"))
    return name, Scenario(
        strategy="one_for_one",
        intensity=2,
        period=3600,
        children=(),
        actions=tuple(actions),
    )


def _ported() -> dict[str, Scenario]:
    cases: dict[str, Scenario] = {}
    for restart in ("permanent", "transient", "temporary"):
        for kind in ("normal", "shutdown", "abnormal"):
            name, scenario = _restart_type(f"{restart}_{kind}", restart)
            cases[name] = scenario

    # one_for_one: child1 crashes, only it restarts; intensity 2 in 3600 s:
    # the third crash (of the newest child) ends the supervisor.
    cases["one_for_one"] = Scenario(
        strategy="one_for_one",
        intensity=2,
        period=3600,
        children=(),
        actions=(
            _api(0.5, "start_child", "child1"),
            _api(0.5, "start_child", "child2"),
            mark(1.5, "crash1"),
            _crash(1.5, "child1"),
            mark(2.5, "crash2"),
            _crash(2.5, "child2"),
            mark(3.5, "crash3"),
            _crash(3.5, "child2"),
        ),
    )
    # one_for_one_escalation: child1's restarts keep failing (intensity 4).
    cases["one_for_one_escalation"] = Scenario(
        strategy="one_for_one",
        intensity=4,
        period=3600,
        children=(),
        actions=(
            _api(0.5, "start_child", "child1"),
            _api(0.5, "start_child", "child2"),
            _fail(0.5, "child1"),
            _crash(1.5, "child1"),
        ),
    )
    # one_for_all: child1's crash restarts both; then crashes up to the limit.
    cases["one_for_all"] = Scenario(
        strategy="one_for_all",
        intensity=2,
        period=3600,
        children=(),
        actions=(
            _api(0.5, "start_child", "child1"),
            _api(0.5, "start_child", "child2"),
            mark(1.5, "crash1"),
            _crash(1.5, "child1"),
            mark(2.5, "crash2"),
            _crash(2.5, "child2"),
            mark(3.5, "crash3"),
            _crash(3.5, "child2"),
        ),
    )
    # one_for_all_escalation: child2 cannot be started again (intensity 4).
    cases["one_for_all_escalation"] = Scenario(
        strategy="one_for_all",
        intensity=4,
        period=3600,
        children=(),
        actions=(
            _api(0.5, "start_child", "child1"),
            _api(0.5, "start_child", "child2"),
            _fail(0.5, "child2"),
            _crash(1.5, "child1"),
        ),
    )
    # one_for_all_other_child_fails_restart: child2's restart fails once;
    # child1, already restarted, is stopped again and both come up.
    cases["one_for_all_other_child_fails_restart"] = Scenario(
        strategy="one_for_all",
        intensity=3,
        period=3600,
        children=_children("child1", "child2"),
        actions=(_fail(0.5, "child2", 1), mark(0.5, "crash"), _crash(0.5, "child1")),
    )
    # rest_for_one: child2 crashes: child3 stops, child2 and child3 restart,
    # child1 keeps running; then crashes up to the limit.
    cases["rest_for_one"] = Scenario(
        strategy="rest_for_one",
        intensity=2,
        period=3600,
        children=(),
        actions=(
            _api(0.5, "start_child", "child1"),
            _api(0.5, "start_child", "child2"),
            _api(0.5, "start_child", "child3"),
            mark(1.5, "crash1"),
            _crash(1.5, "child2"),
            mark(2.5, "crash2"),
            _crash(2.5, "child3"),
            mark(3.5, "crash3"),
            _crash(3.5, "child2"),
        ),
    )
    # rest_for_one_escalation: after child1's crash child2 cannot be started.
    cases["rest_for_one_escalation"] = Scenario(
        strategy="rest_for_one",
        intensity=4,
        period=3600,
        children=(),
        actions=(
            _api(0.5, "start_child", "child1"),
            _api(0.5, "start_child", "child2"),
            _fail(0.5, "child2"),
            _crash(1.5, "child1"),
        ),
    )
    # rest_for_one_other_child_fails_restart: child2's restart fails once;
    # the retry restarts child2 only, not child1 again.
    cases["rest_for_one_other_child_fails_restart"] = Scenario(
        strategy="rest_for_one",
        intensity=3,
        period=3600,
        children=_children("child1", "child2"),
        actions=(_fail(0.5, "child2", 1), mark(0.5, "crash"), _crash(0.5, "child1")),
    )
    # temporary_bystander, once per group strategy (intensity 2 in 300 s):
    # child1 exits normally; the temporary child2 stopped with it stays gone.
    for strategy in ("one_for_all", "rest_for_one"):
        cases[f"temporary_bystander_{strategy}"] = Scenario(
            strategy=strategy,
            intensity=2,
            period=300,
            children=(),
            actions=(
                _api(0.5, "start_child", "child1"),
                _api(0.5, "start_child", "child2", "temporary"),
                mark(1.5, "crash"),
                _crash(1.5, "child1", "normal"),
                _api(2.5, "restart_child", "child2"),
                _api(2.5, "delete_child", "child2"),
            ),
        )
    # multiple_restarts: intensity 1 in 1 s; four crashes 2 s apart (the
    # SUITE waits 2.1 s) never exceed it; then terminate and delete the child.
    cases["multiple_restarts"] = Scenario(
        strategy="one_for_one",
        intensity=1,
        period=1,
        children=(),
        actions=(
            _api(0.5, "start_child", "child1"),
            _crash(0.5, "child1"),
            _crash(2.5, "child1"),
            _crash(4.5, "child1"),
            _crash(6.5, "child1"),
            mark(6.5, "cleanup"),
            _api(6.5, "terminate_child", "child1"),
            _api(6.5, "delete_child", "child1"),
        ),
    )
    # order_of_children: ids not in alphabetical order; the 3rd of 5 crashes
    # under rest_for_one; then the supervisor's shutdown.
    cases["order_of_children"] = Scenario(
        strategy="rest_for_one",
        intensity=2,
        period=3600,
        children=_children("ch7", "ch3", "ch10", "ch2", "ch5"),
        actions=(
            mark(0.5, "crash"),
            _crash(0.5, "ch10"),
            mark(0.5, "shutdown"),
        ),
    )
    # child_adm: the API on one_for_one, in the SUITE's order (the parts that
    # need no pid or process_info).
    steps = [
        ("start_child", "child1"),  # already_started
        ("terminate_child", "hej"),  # not_found
        ("terminate_child", "child1"),  # ok, child1 stops
        ("terminate_child", "child1"),  # ok again
        ("start_child", "child1"),  # already_present
        ("restart_child", "child1"),  # ok
        ("restart_child", "child1"),  # running
        ("restart_child", "child2"),  # not_found
        ("delete_child", "child1"),  # running
        ("delete_child", "hej"),  # not_found
        ("terminate_child", "child1"),  # ok
        ("delete_child", "child1"),  # ok
        ("restart_child", "child1"),  # not_found
        ("start_child", "child1"),  # ok
    ]
    cases["child_adm"] = Scenario(
        strategy="one_for_one",
        intensity=2,
        period=3600,
        children=_children("child1"),
        actions=tuple(_api(0.5 + i, op, child) for i, (op, child) in enumerate(steps)),
    )
    # extra_return: the same API walk, and the child re-added with
    # start_child is still restarted automatically.
    steps = [
        ("terminate_child", "hej"),
        ("delete_child", "hej"),
        ("restart_child", "hej"),
        ("delete_child", "child1"),
        ("restart_child", "child1"),
        ("terminate_child", "child1"),
        ("restart_child", "child1"),
        ("terminate_child", "child1"),
        ("terminate_child", "child1"),
        ("delete_child", "child1"),
        ("restart_child", "child1"),
        ("start_child", "child1"),
    ]
    cases["extra_return"] = Scenario(
        strategy="one_for_one",
        intensity=2,
        period=3600,
        children=_children("child1"),
        actions=(
            *(_api(0.5, op, child) for op, child in steps),
            mark(1.5, "crash"),
            _crash(1.5, "child1"),
        ),
    )
    # sup_start_child_returns_error: a failing start_child stores nothing.
    cases["sup_start_child_returns_error"] = Scenario(
        strategy="one_for_one",
        intensity=2,
        period=3600,
        children=(),
        actions=(
            _fail(0.5, "child1", 1),
            _api(0.5, "start_child", "child1"),
            _api(0.5, "delete_child", "child1"),
        ),
    )
    # sup_start_restart_child_returns_error: restart_child whose start fails
    # returns an error and the child stays, not running.
    cases["sup_start_restart_child_returns_error"] = Scenario(
        strategy="one_for_one",
        intensity=2,
        period=3600,
        children=_children("child1"),
        actions=(
            _fail(0.5, "child1"),
            _api(0.5, "terminate_child", "child1"),
            _api(0.5, "restart_child", "child1"),
            _api(0.5, "start_child", "child1"),
        ),
    )
    # do_not_save_child_specs_for_temporary_children: a temporary child is
    # forgotten after terminate_child, a normal and an abnormal exit.
    cases["do_not_save_child_specs_for_temporary_children"] = Scenario(
        strategy="one_for_one",
        intensity=5,
        period=3600,
        children=_children("perm", "trans:transient", "temp:temporary"),
        actions=(
            _api(0.5, "terminate_child", "perm"),
            _api(0.5, "terminate_child", "trans"),
            _api(0.5, "terminate_child", "temp"),
            mark(0.5, "terminated"),
            _api(0.5, "start_child", "perm"),
            _api(0.5, "start_child", "trans", "transient"),
            _api(0.5, "start_child", "temp", "temporary"),
            _crash(1.5, "temp", "normal"),
            _api(1.5, "restart_child", "temp"),
            _api(2.5, "start_child", "temp", "temporary"),
            _crash(2.5, "temp", "abnormal"),
            _api(2.5, "restart_child", "temp"),
        ),
    )
    # simple_one_for_one: only the crashed dynamic child restarts; crashes up
    # to the limit end the supervisor with shutdown.
    cases["simple_one_for_one"] = Scenario(
        strategy="simple_one_for_one",
        intensity=2,
        period=3600,
        children=_children("child"),
        actions=(
            _api(0.5, "start_child", "w1"),
            _api(0.5, "start_child", "w2"),
            mark(1.5, "crash1"),
            _crash(1.5, "w1"),
            mark(2.5, "crash2"),
            _crash(2.5, "w2"),
            mark(3.5, "crash3"),
            _crash(3.5, "w2"),
        ),
    )
    # simple_one_for_one_escalation: w1's restarts keep failing (intensity 4).
    cases["simple_one_for_one_escalation"] = Scenario(
        strategy="simple_one_for_one",
        intensity=4,
        period=3600,
        children=_children("child"),
        actions=(
            _api(0.5, "start_child", "w1"),
            _fail(0.5, "w1"),
            _api(0.5, "start_child", "w2"),
            _crash(1.5, "w1"),
        ),
    )
    # child_adm_simple: restart_child/delete_child are not for
    # simple_one_for_one; terminate_child of a live child stops it. (The
    # SUITE's "terminate a dead pid: ok" step is a known, deliberate
    # difference: see test_conformance.)
    cases["child_adm_simple"] = Scenario(
        strategy="simple_one_for_one",
        intensity=2,
        period=3600,
        children=_children("child"),
        actions=(
            _api(0.5, "start_child", "w1"),
            _api(0.5, "start_child", "w2"),
            _api(1.5, "terminate_child", "w1"),
            _api(2.5, "restart_child", "w2"),
            _api(2.5, "delete_child", "w2"),
        ),
    )
    return cases


#: Every ported case, by name (one OTP SUITE case may give several scenarios).
PORTED: Final = _ported()
