"""The pure restart policy, for those who build on it (the runtime, models, tests).

Every decision a supervisor makes about a child that exited is one function
here: :func:`exit_action`, :func:`add_restart`, :func:`plan_restart`,
:func:`count_failure`, :func:`restart_delay`, :func:`failed_start` and
:func:`auto_shutdown_due`; under a failure policy, :func:`judge_failure` (with
:func:`healthy_after`) decides a failure by its kind. Declaring a tree needs
none of it: see :mod:`specs`.
"""

from __future__ import annotations

from ._policy import ChildView as ChildView
from ._policy import ExitAction as ExitAction
from ._policy import ExitKind as ExitKind
from ._policy import FailedStart as FailedStart
from ._policy import FailureVerdict as FailureVerdict
from ._policy import RestartPlan as RestartPlan
from ._policy import add_restart as add_restart
from ._policy import auto_shutdown_due as auto_shutdown_due
from ._policy import backoff_delay as backoff_delay
from ._policy import count_failure as count_failure
from ._policy import exit_action as exit_action
from ._policy import failed_start as failed_start
from ._policy import healthy_after as healthy_after
from ._policy import judge_failure as judge_failure
from ._policy import plan_restart as plan_restart
from ._policy import restart_delay as restart_delay
from ._policy import restarts_in_window as restarts_in_window
from ._surface import publish as _publish

__all__ = [
    "ChildView",
    "ExitAction",
    "ExitKind",
    "FailedStart",
    "FailureVerdict",
    "RestartPlan",
    "add_restart",
    "auto_shutdown_due",
    "backoff_delay",
    "count_failure",
    "exit_action",
    "failed_start",
    "healthy_after",
    "judge_failure",
    "plan_restart",
    "restart_delay",
    "restarts_in_window",
]

_publish(__name__, globals())
