"""Property-test your own trees: fault schedules, the reference model, scripted workers.

Your real tree: ``fault_schedules(spec)`` draws timed faults for it (with
Hypothesis, from the ``[testing]`` extra); ``check_tree(spec, schedule,
invariants=...)`` runs them on the runtime, every leaf swapped for a puppet,
on a mock clock, checks the trace against ``simulate(spec, schedule)`` (the
reference model) and then your invariants; ``TreeMachine.for_spec(spec)`` is
a Hypothesis state machine interleaving faults, API calls and time.

Scenarios: ``run_scenario`` runs a :class:`Scenario` (a flat tree and a timed
fault schedule, the shape the OTP conformance suite also runs) on the runtime;
``simulate(scenario)`` on the model; ``scenarios()`` draws them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from specs._surface import publish as _publish

from ._check import TraceMismatch as TraceMismatch
from ._check import TreeRun as TreeRun
from ._check import check_tree as check_tree
from ._check import trace_diff as trace_diff
from ._exceptions import MissingExtra as _MissingExtra
from ._harness import Puppets as Puppets
from ._harness import ScriptedCrash as ScriptedCrash
from ._harness import ScriptedStartError as ScriptedStartError
from ._harness import TreePuppets as TreePuppets
from ._harness import TreeRunner as TreeRunner
from ._harness import puppet_tree as puppet_tree
from ._harness import run_scenario as run_scenario
from ._harness import run_tree as run_tree
from ._harness import scenario_spec as scenario_spec
from ._model import Unmodelled as Unmodelled
from ._model import normalise_trace as normalise_trace
from ._model import simulate as simulate
from ._scenario import Action as Action
from ._scenario import Fault as Fault
from ._scenario import FaultSchedule as FaultSchedule
from ._scenario import Scenario as Scenario
from ._scenario import ScenarioChild as ScenarioChild
from ._scenario import Step as Step
from ._scenario import TraceLine as TraceLine

if TYPE_CHECKING:
    from ._machine import TreeMachine as TreeMachine
    from ._strategies import fault_schedules as fault_schedules
    from ._strategies import scenarios as scenarios

_NEED_HYPOTHESIS = {
    "scenarios": "_strategies",
    "fault_schedules": "_strategies",
    "TreeMachine": "_machine",
}


def __getattr__(name: str) -> object:
    # these load on first use, so the rest of the toolkit works without Hypothesis
    if name in _NEED_HYPOTHESIS:
        with _MissingExtra.guard("testing", f"{__name__}.{name}"):
            module = importlib.import_module(f"{__package__}.{_NEED_HYPOTHESIS[name]}")
        value = getattr(module, name)
        _publish(__name__, {name: value})
        globals()[name] = value
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "Action",
    "Fault",
    "FaultSchedule",
    "Puppets",
    "Scenario",
    "ScenarioChild",
    "ScriptedCrash",
    "ScriptedStartError",
    "Step",
    "TraceLine",
    "TraceMismatch",
    "TreeMachine",
    "TreePuppets",
    "TreeRun",
    "TreeRunner",
    "Unmodelled",
    "check_tree",
    "fault_schedules",
    "normalise_trace",
    "puppet_tree",
    "run_scenario",
    "run_tree",
    "scenario_spec",
    "scenarios",
    "simulate",
    "trace_diff",
]

_publish(__name__, globals())
