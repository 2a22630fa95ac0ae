"""The pure restart policy: every decision about a child that exited.

Public as :mod:`specs.policy`. The runtime (``supervisor``) and the reference
model (``supervisor.testing``) both carry out these decisions; neither decides
anything on its own. No trio, no clock: time is passed in.

In the order a crash meets them: :func:`exit_action` (restart, keep or
forget it), under a failure policy :func:`judge_failure` (the decision and
budget of the failure's kind), :func:`add_restart` (does intensity allow it),
:func:`plan_restart` (which children stop and start), :func:`count_failure`
and :func:`restart_delay` (how long to wait first), :func:`failed_start`
(what a start that fails midway leaves), and for an exit that is not
restarted, :func:`auto_shutdown_due` (does it end the supervisor).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs

from ._spec import AutoShutdown, Backoff, Decision, FailurePolicy, Restart, Strategy


class ExitKind(enum.Enum):
    """How a child's run ended, as the restart policy sees it."""

    #: The child returned (OTP's ``normal``).
    NORMAL = "normal"
    #: The child raised ``supervisor.Shutdown``, or it is a supervisor that
    #: stopped itself (OTP's ``shutdown`` / ``{shutdown, Reason}``).
    SHUTDOWN = "shutdown"
    #: Anything else: an exception (OTP: any other reason).
    ABNORMAL = "abnormal"


class ExitAction(enum.Enum):
    """What a supervisor does with a child that exited on its own."""

    #: Restart it, under the supervisor's strategy, if intensity allows.
    RESTART = "restart"
    #: Keep its spec, not running (a TRANSIENT child's normal exit).
    KEEP = "keep"
    #: Forget it (a TEMPORARY child, whatever the reason).
    REMOVE = "remove"
    #: Keep it stopped, whatever its restart type, until ``restart_child``
    #: (a failure policy's :attr:`~specs.Decision.STAY_DOWN`).
    STAY_DOWN = "stay_down"
    #: Give up now, as when intensity is exceeded (a failure policy's
    #: :attr:`~specs.Decision.ESCALATE`).
    ESCALATE = "escalate"


def exit_action(restart: Restart, kind: ExitKind, *, dynamic: bool = False) -> ExitAction:
    """Decide what an exit means for a child (OTP's ``do_restart/3``).

    Args:
        restart: The child's restart type.
        kind: How its run ended.
        dynamic: Whether the child belongs to a dynamic supervisor, which
            keeps no spec per child: one that is not restarted is forgotten
            (OTP's simple_one_for_one, Elixir's DynamicSupervisor).
    """
    if restart is Restart.PERMANENT:
        return ExitAction.RESTART
    if restart is Restart.TEMPORARY:
        return ExitAction.REMOVE
    if kind is ExitKind.ABNORMAL:
        return ExitAction.RESTART
    return ExitAction.REMOVE if dynamic else ExitAction.KEEP


def add_restart(
    restarts: tuple[float, ...], now: float, *, intensity: int, period: float
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at ``now`` and tell whether intensity allows it.

    OTP's ``add_restart/1``: restarts at or after ``now - period`` are kept
    (inclusive: one exactly ``period`` ago still counts), the new one is
    added, and the restart is allowed while at most ``intensity`` remain.

    Args:
        restarts: Earlier restart times, newest first.
        now: The current time.
        intensity: The most restarts allowed in a window.
        period: The window's length, in seconds.

    Returns:
        The new window (newest first) and whether the restart may go ahead.
    """
    threshold = now - period
    kept: list[float] = [now]
    for then in restarts:
        if then < threshold:
            break
        kept.append(then)
    window = tuple(kept)
    return window, len(window) <= intensity


def restarts_in_window(restarts: Iterable[float], now: float, period: float) -> int:
    """Count the restarts that still count toward intensity at ``now``."""
    threshold = now - period
    return sum(1 for then in restarts if then >= threshold)


class RestartWindow:
    """The intensity window :func:`add_restart` keeps, at O(1) amortised per restart.

    The same rule as :func:`add_restart` (the reference), on a deque oldest
    first: a restart falls out once it is older than ``now - period``
    (inclusive: one exactly ``period`` ago still counts), so each time is
    appended once and pruned from the left once, whatever the intensity.
    Times must not decrease (trio's clock does not).
    """

    __slots__ = ("_times",)

    def __init__(self, times: Iterable[float] = ()) -> None:
        self._times: deque[float] = deque(times)

    def __iter__(self) -> Iterator[float]:
        """The restarts it holds, oldest first."""
        return iter(self._times)

    def __len__(self) -> int:
        return len(self._times)

    def _prune(self, now: float, period: float) -> None:
        threshold = now - period
        times = self._times
        while times and times[0] < threshold:
            times.popleft()

    def allows(self, now: float, *, intensity: int, period: float) -> bool:
        """Whether a restart at ``now`` would be allowed (records nothing that counts)."""
        self._prune(now, period)
        return len(self._times) + 1 <= intensity

    def add(self, now: float, *, intensity: int, period: float) -> bool:
        """Record a restart at ``now``; tell whether intensity allows it (:func:`add_restart`)."""
        self._prune(now, period)
        self._times.append(now)
        return len(self._times) <= intensity


@attrs.frozen
class ChildView:
    """What the policy needs to know of one child.

    Attributes:
        id: Its id.
        restart: Its restart type.
        running: Whether it has a live incarnation (started or starting).
        restarting: Whether a restart of it is pending (a backoff delay, or a
            retry after a failed start).
        significant: Whether its exit may end its supervisor (auto_shutdown).
    """

    id: str
    restart: Restart
    running: bool
    restarting: bool = False
    significant: bool = False


@attrs.frozen
class RestartPlan:
    """The steps of one restart, in the order they must happen.

    Attributes:
        stop: Running children to stop first, in this order (reverse start order).
        start: Children to start next, in this order (start order).
        remove: Children forgotten once stopped (temporary bystanders).
    """

    stop: tuple[str, ...]
    start: tuple[str, ...]
    remove: tuple[str, ...]


def plan_restart(strategy: Strategy, children: Sequence[ChildView], failed: str) -> RestartPlan:
    """Plan the restart of ``failed`` under ``strategy`` (OTP's ``restart/3``).

    Children that are not running (stopped with ``terminate_child``, or
    transient children that exited normally) are started again by a group
    restart, as in OTP; temporary children caught up in a group restart are
    stopped and removed, never started again.

    Args:
        strategy: The supervisor's strategy.
        children: The children in start order. For :data:`ONE_FOR_ONE` only
            ``failed`` is looked at.
        failed: The id of the child whose restart is due.

    Raises:
        KeyError: if ``failed`` is not among ``children``.
    """
    if strategy is Strategy.ONE_FOR_ONE:
        return RestartPlan(stop=(), start=(failed,), remove=())
    index = next((i for i, child in enumerate(children) if child.id == failed), None)
    if index is None:
        raise KeyError(failed)
    affected = children[index:] if strategy is Strategy.REST_FOR_ONE else children
    stop = tuple(c.id for c in reversed(affected) if c.running and c.id != failed)
    start = tuple(c.id for c in affected if c.id == failed or c.restart is not Restart.TEMPORARY)
    remove = tuple(
        c.id for c in affected if c.id != failed and c.restart is Restart.TEMPORARY and c.running
    )
    return RestartPlan(stop=stop, start=start, remove=remove)


@attrs.frozen
class FailedStart:
    """What a start that fails in the middle of a group restart leaves.

    The children of the group started before it stay up.

    Attributes:
        retry: The child whose start failed: it stays restarting, and its
            restart is retried through the supervisor's loop (OTP's
            ``try_again_restart``), counting toward intensity, with it as the
            child that failed.
        stopped: The children after it in the group: not started, and not
            restarting either; the retry's plan starts them again.
    """

    retry: str
    stopped: tuple[str, ...]


def failed_start(start: Sequence[str], failed: str) -> FailedStart:
    """What is left when ``failed``, one of ``start`` (a plan's start order), fails to start.

    Raises:
        ValueError: if ``failed`` is not in ``start``.
    """
    index = list(start).index(failed)
    return FailedStart(retry=failed, stopped=tuple(start[index + 1 :]))


def count_failure(failures: int, *, last_run: float, backoff: Backoff | None) -> int:
    """A child's consecutive failures, counting the one that just happened.

    A child that ran healthy for at least ``backoff.reset_after`` seconds
    before this failure counts from one again (Kubernetes' reset idea).

    Args:
        failures: Its consecutive failures before this one.
        last_run: How long its last incarnation ran, in seconds.
        backoff: Its supervisor's backoff, if any.
    """
    if backoff is not None and last_run >= backoff.reset_after:
        failures = 0
    return failures + 1


def restart_delay(
    backoff: Backoff | None,
    failures: int,
    *,
    hint: float | None,
    rng: random.Random | None = None,
) -> float:
    """The delay before a child's restart; 0 means at once (OTP).

    A failure's own delay (``hint``: a FloodWait's seconds) beats the
    backoff; without either, the restart is immediate.

    Args:
        backoff: The supervisor's backoff, if any.
        failures: The child's consecutive failures (:func:`count_failure`).
        hint: The delay its exit asked for, if any.
        rng: The source of jitter (see :func:`backoff_delay`).
    """
    if hint is not None:
        return hint
    if backoff is None:
        return 0.0
    return backoff_delay(backoff, failures, rng)


def backoff_delay(backoff: Backoff, failures: int, rng: random.Random | None = None) -> float:
    """The delay before a child's restart after ``failures`` consecutive failures.

    ``min(wait_max, wait_initial * wait_exp_base**(failures-1) + U(0, wait_jitter))``

    Args:
        backoff: The parameters.
        failures: Consecutive failures, counting this one (>= 1).
        rng: The source of jitter (``random`` by default); seed one for tests.
    """
    if failures < 1:
        msg = f"failures must be >= 1 (got {failures})"
        raise ValueError(msg)
    jitter = (rng or random).uniform(0, backoff.wait_jitter) if backoff.wait_jitter else 0.0
    try:
        grown = backoff.wait_initial * backoff.wait_exp_base ** (failures - 1)
    except OverflowError:
        return backoff.wait_max
    return min(backoff.wait_max, grown + jitter)


def auto_shutdown_due(
    mode: AutoShutdown, *, significant: bool, siblings: Iterable[ChildView]
) -> bool:
    """Tell whether a child's own, final exit ends its supervisor (EEP 56).

    Called only for an exit that is not followed by a restart; a child
    stopped by its supervisor or by ``terminate_child`` never counts.

    Args:
        mode: The supervisor's ``auto_shutdown``.
        significant: Whether the child that exited is significant.
        siblings: The supervisor's other children (read only for
            ``ALL_SIGNIFICANT``): a significant one still running, starting
            or restarting keeps the supervisor up.
    """
    if mode is AutoShutdown.NEVER or not significant:
        return False
    if mode is AutoShutdown.ANY_SIGNIFICANT:
        return True
    return not any(c.significant and (c.running or c.restarting) for c in siblings)


@attrs.frozen
class FailureVerdict:
    """What :func:`judge_failure` decided for one failure.

    Attributes:
        action: What the supervisor does: ``exit_action``'s answer, or
            ``STAY_DOWN``/``ESCALATE`` (``RESTART`` still counts toward
            intensity).
        budgets: Each kind's failures still in its window after this one,
            newest first: the child's state for the next failure.
        failures: Consecutive failures of this kind, this one included: the
            ``failures`` of the restart's delay.
        backoff: The delays this kind restarts with (``None``: at once).
        spent: Whether the kind's budget ran out with this failure.
    """

    action: ExitAction
    budgets: dict[str, tuple[float, ...]]
    failures: int
    backoff: Backoff | None
    spent: bool = False


def healthy_after(policy: FailurePolicy | None, backoff: Backoff | None, period: float) -> float:
    """Seconds of healthy running that clear a child's budgets and make its recovery count.

    The policy's ``reset_after``, else its backoff's, else the supervisor's
    backoff's, else the supervisor's ``period``.
    """
    if policy is not None:
        if policy.reset_after is not None:
            return policy.reset_after
        if policy.backoff is not None:
            return policy.backoff.reset_after
    return backoff.reset_after if backoff is not None else period


def judge_failure(
    policy: FailurePolicy,
    kind: str,
    action: ExitAction,
    budgets: Mapping[str, tuple[float, ...]],
    *,
    now: float,
    last_run: float,
    backoff: Backoff | None,
    period: float,
) -> FailureVerdict:
    """Decide a child's failure of ``kind`` under ``policy`` (Akka's ``onFailure[T]``).

    A run of at least :func:`healthy_after` seconds before this failure
    clears every kind's budget. This failure joins its kind's window
    (failures within the rule's ``window`` of ``now``, inclusive). Then the
    kind's rule decides: ``RESTART`` leaves ``action`` as the restart type
    made it, unless the window then holds more than ``budget`` failures:
    the rule's ``when_spent`` answers instead. ``ESCALATE`` and
    ``STAY_DOWN`` hold whatever the restart type: ``STAY_DOWN`` keeps the
    child, stopped (a TEMPORARY child is forgotten as always).

    Args:
        policy: The supervisor's failure policy.
        kind: The failure's kind (``ExitReason.failure_kind``).
        action: What :func:`exit_action` said.
        budgets: The child's windows per kind, from the last verdict.
        now: The time of the failure.
        last_run: How long the incarnation that failed ran.
        backoff: The supervisor's backoff.
        period: The supervisor's intensity period.
    """
    rule = policy.rule(kind)
    if last_run >= healthy_after(policy, backoff, period):
        budgets = {}
    threshold = now - rule.window
    window = (now, *(then for then in budgets.get(kind, ()) if then >= threshold))
    updated = {**budgets, kind: window}
    pace = rule.backoff or policy.backoff or backoff
    decision = rule.decision
    spent = decision is Decision.RESTART and rule.budget is not None and len(window) > rule.budget
    if spent:
        decision = rule.when_spent
    if decision is Decision.RESTART:
        decided = action
    elif decision is Decision.ESCALATE:
        decided = ExitAction.ESCALATE
    else:
        decided = ExitAction.REMOVE if action is ExitAction.REMOVE else ExitAction.STAY_DOWN
    return FailureVerdict(decided, updated, len(window), pace, spent=spent)
