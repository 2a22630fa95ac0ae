"""A seeded, reproducible generator of scenarios for the OTP differential tests.

Why not Hypothesis? The batch is run on OTP once per session and each of its
scenarios becomes one test, ``test_generated[NNNN-strategy]``; a test id must
mean the same scenario on every machine, run and library version, so that a
failure can be named, rerun and fixed. ``generate(count, seed)`` reads nothing
but :meth:`random.Random.random` seeded with the string ``f"{seed}:{index}"``:
Python guarantees that ``random()`` gives the same sequence for the same seed
on every version (``choice``/``randint`` carry no such promise, so they are
not used). Scenario ``i`` depends only on ``seed`` and ``i``.

Coverage is steered rather than left to chance:

* strategies rotate with the index (one_for_one, rest_for_one, one_for_all,
  simple_one_for_one), so each gets a quarter of the batch;
* intensity rotates through 0..5 (the next digit of the index), and the
  dominant restart type of the children rotates with the one after it;
  periods are short (1..5 s, mostly 1..3);
* action times are ``X.5`` seconds, so whole-second (OTP) and float (ours)
  clocks agree on every intensity-window comparison. Consecutive action
  groups are ``period`` s apart (a restart exactly ``period`` seconds after an
  earlier one still counts: the window is inclusive), ``period + 1`` s (just
  out of it), 1 s or 2 s; about a third of the groups are bursts of 2-4
  actions at the same instant;
* ops: crashes with every reason, ``fail_starts`` (failing restarts, retries
  and group restarts that stop halfway), and every API call;
* dynamic children get unique names (``w1``, ``w2``, ...), as the OTP harness
  requires, and ``restart_child``/``delete_child`` are not used on dynamic
  supervisors (they do not exist there; ``test_conformance`` checks that case
  on its own).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, TypeVar

from supervisor.testing import Action, Scenario, ScenarioChild

__all__ = ["DEFAULT_SEED", "LAST_AT", "generate"]

#: The seed of the batch in ``test_conformance`` (the date of the OTP research note).
DEFAULT_SEED: Final = 20261124
#: No action is later than this many seconds, so an OTP batch takes about this long.
LAST_AT: Final = 14.5

_STRATEGIES: Final = ("one_for_one", "rest_for_one", "one_for_all", "simple_one_for_one")
_RESTARTS: Final = ("permanent", "transient", "temporary")
_REASONS: Final = ("abnormal", "abnormal", "abnormal", "normal", "shutdown", "shutdown_r")
_PERIODS: Final = (1, 1, 2, 2, 3, 3, 4, 5)
_STATIC_OPS: Final = (
    ("crash", 50),
    ("fail_starts", 10),
    ("terminate_child", 10),
    ("restart_child", 10),
    ("delete_child", 5),
    ("start_child", 15),
)
_DYNAMIC_OPS: Final = (
    ("start_child", 30),
    ("crash", 45),
    ("fail_starts", 10),
    ("terminate_child", 15),
)

_T = TypeVar("_T")


class _Draw:
    """Draws built on ``random()`` alone, whose sequence Python keeps stable."""

    def __init__(self, seed: str) -> None:
        self._random = random.Random(seed)

    def chance(self, p: float) -> bool:
        return self._random.random() < p

    def below(self, n: int) -> int:
        return min(int(self._random.random() * n), n - 1)

    def between(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)

    def choice(self, items: Sequence[_T]) -> _T:
        return items[self.below(len(items))]

    def weighted(self, table: Sequence[tuple[_T, int]]) -> _T:
        pick = self.below(sum(weight for _, weight in table))
        for value, weight in table:
            if pick < weight:
                return value
            pick -= weight
        raise AssertionError("unreachable")


def _schedule(draw: _Draw, period: int, count: int) -> list[float]:
    """Up to ``count`` action times at ``X.5`` s, with bursts and window-boundary gaps."""
    times: list[float] = []
    second = 0
    while len(times) < count and second + 0.5 <= LAST_AT:
        burst = 1 if draw.chance(0.7) else draw.between(2, 4)
        times.extend([second + 0.5] * min(burst, count - len(times)))
        second += draw.weighted(((period, 35), (period + 1, 15), (1, 35), (2, 15)))
    return times


def _static(draw: _Draw, index: int, strategy: str) -> Scenario:
    dominant = _RESTARTS[index // (len(_STRATEGIES) * 6) % len(_RESTARTS)]
    children = tuple(
        ScenarioChild(
            id=f"c{i + 1}",
            restart=dominant if draw.chance(0.6) else draw.choice(_RESTARTS),  # type: ignore[arg-type]
        )
        for i in range(draw.between(1, 5))
    )
    period = draw.choice(_PERIODS)
    ids = [c.id for c in children]
    extra = ["n1", "n2"]  # children added with start_child
    actions: list[Action] = []
    for at in _schedule(draw, period, draw.between(1, 12)):
        op = draw.weighted(_STATIC_OPS)
        if op == "start_child":
            child = draw.choice([*extra, ids[0]])
        elif op == "crash":
            child = draw.choice(ids) if draw.chance(0.85) else draw.choice(extra)
        else:
            child = draw.choice([*ids, extra[0]])
        actions.append(
            Action(
                at=at,
                op=op,  # type: ignore[arg-type]
                child=child,
                reason=draw.choice(_REASONS),
                count=draw.between(1, 3),
                restart=draw.choice(_RESTARTS),
            )
        )
    init_fail: tuple[tuple[str, int], ...] = ()
    if draw.chance(0.08):
        init_fail = ((draw.choice(ids), 1),)
    return Scenario(
        strategy=strategy,  # type: ignore[arg-type]
        intensity=index // len(_STRATEGIES) % 6,
        period=period,
        children=children,
        actions=tuple(actions),
        init_fail=init_fail,
    )


def _dynamic(draw: _Draw, index: int) -> Scenario:
    restart = _RESTARTS[index // (len(_STRATEGIES) * 6) % len(_RESTARTS)]
    period = draw.choice(_PERIODS)
    started: list[str] = []
    actions: list[Action] = []
    times = _schedule(draw, period, draw.between(2, 12))
    # most dynamic scenarios begin with a few start_child calls
    initial = draw.between(1, 3) if draw.chance(0.8) else 0
    for number, at in enumerate(times):
        op = "start_child" if number < initial else draw.weighted(_DYNAMIC_OPS)
        fresh = f"w{len(started) + 1}"
        if op == "start_child":
            child = fresh
            started.append(child)
        elif op == "fail_starts" and draw.chance(0.5):
            child = fresh  # the next child to be started
        else:
            # a crash or terminate_child of a name never started is a "skip"/not_found
            child = draw.choice(started) if started else fresh
        actions.append(
            Action(
                at=at,
                op=op,  # type: ignore[arg-type]
                child=child,
                reason=draw.choice(_REASONS),
                count=draw.between(1, 3),
            )
        )
    return Scenario(
        strategy="simple_one_for_one",
        intensity=index // len(_STRATEGIES) % 6,
        period=period,
        children=(ScenarioChild(id="w", restart=restart),),  # type: ignore[arg-type]
        actions=tuple(actions),
    )


def generate(count: int, seed: int = DEFAULT_SEED) -> list[Scenario]:
    """Draw ``count`` scenarios: the same ones for the same ``(count, seed)``, everywhere.

    A longer batch extends a shorter one with the same seed.
    """
    batch = []
    for index in range(count):
        draw = _Draw(f"{seed}:{index}")
        strategy = _STRATEGIES[index % len(_STRATEGIES)]
        if strategy == "simple_one_for_one":
            batch.append(_dynamic(draw, index))
        else:
            batch.append(_static(draw, index, strategy))
    return batch
