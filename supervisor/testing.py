"""Property-test your own trees: scripted workers, scenarios, the reference model.

``run_scenario`` runs a :class:`Scenario` (a tree and a timed fault
schedule) on the runtime under a mock clock; ``simulate`` runs it on the
pure reference model of OTP semantics; their traces must be equal.
``scenarios()`` draws scenarios with Hypothesis, from the ``[testing]``
extra; everything else here needs only trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from specs._surface import publish as _publish

from ._exceptions import MissingExtra as _MissingExtra
from ._harness import Puppets as Puppets
from ._harness import ScriptedCrash as ScriptedCrash
from ._harness import ScriptedStartError as ScriptedStartError
from ._harness import run_scenario as run_scenario
from ._harness import scenario_spec as scenario_spec
from ._model import normalise_trace as normalise_trace
from ._model import simulate as simulate
from ._scenario import Action as Action
from ._scenario import Scenario as Scenario
from ._scenario import ScenarioChild as ScenarioChild
from ._scenario import TraceLine as TraceLine

if TYPE_CHECKING:
    from ._strategies import scenarios as scenarios


def __getattr__(name: str) -> object:
    # the strategies load on first use, so the rest of the toolkit works without Hypothesis
    if name == "scenarios":
        with _MissingExtra.guard("testing", f"{__name__}.scenarios"):
            from ._strategies import scenarios
        _publish(__name__, {name: scenarios})
        globals()[name] = scenarios
        return scenarios
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "Action",
    "Puppets",
    "Scenario",
    "ScenarioChild",
    "ScriptedCrash",
    "ScriptedStartError",
    "TraceLine",
    "normalise_trace",
    "run_scenario",
    "scenario_spec",
    "scenarios",
    "simulate",
]

_publish(__name__, globals())
