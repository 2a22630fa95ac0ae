"""The trio runtime that executes a supervision tree declared with ``specs``.

Embed a tree with ``async with open_supervisor(spec) as sup:``, start one
from a nursery with ``await nursery.start(run_supervisor, spec)``, or run a
whole program with ``supervisor.run(spec)``.
"""

from __future__ import annotations

import os as _os

from specs._surface import publish as _publish

from ._api import DynamicSupervisorHandle as DynamicSupervisorHandle
from ._api import SupervisorHandle as SupervisorHandle
from ._api import current_supervisor as current_supervisor
from ._api import open_supervisor as open_supervisor
from ._api import run_supervisor as run_supervisor
from ._child import ChildContext as ChildContext
from ._child import current_child as current_child
from ._child import shutdown_grace as shutdown_grace
from ._events import Event as Event
from ._events import Hook as Hook
from ._events import logging_hook as logging_hook
from ._exceptions import ChildAlreadyPresent as ChildAlreadyPresent
from ._exceptions import ChildAlreadyStarted as ChildAlreadyStarted
from ._exceptions import ChildNotFound as ChildNotFound
from ._exceptions import ChildRestarting as ChildRestarting
from ._exceptions import ChildRunning as ChildRunning
from ._exceptions import ChildUnresponsive as ChildUnresponsive
from ._exceptions import FailedToStartChild as FailedToStartChild
from ._exceptions import MaxChildrenReached as MaxChildrenReached
from ._exceptions import MaxIntensityReached as MaxIntensityReached
from ._exceptions import MissingExtra as MissingExtra
from ._exceptions import Shutdown as Shutdown
from ._exceptions import SupervisorNotRunning as SupervisorNotRunning
from ._program import EXIT_BAD_SPEC as EXIT_BAD_SPEC
from ._program import EXIT_GAVE_UP as EXIT_GAVE_UP
from ._program import EXIT_OK as EXIT_OK
from ._program import EXIT_SHUTDOWN_TIMEOUT as EXIT_SHUTDOWN_TIMEOUT
from ._program import EXIT_START_FAILED as EXIT_START_FAILED
from ._program import run as run
from ._reasons import ExitReason as ExitReason
from ._snapshot import ChildCounts as ChildCounts
from ._snapshot import ChildInfo as ChildInfo
from ._snapshot import ChildSnapshot as ChildSnapshot
from ._snapshot import ChildState as ChildState
from ._snapshot import KindRecovery as KindRecovery
from ._snapshot import RecoverySnapshot as RecoverySnapshot
from ._snapshot import SupervisorSnapshot as SupervisorSnapshot
from ._structlog import structlog_hook as structlog_hook
from ._treeview import render_text as render_text

__all__ = [
    "ChildAlreadyPresent",
    "ChildAlreadyStarted",
    "ChildContext",
    "ChildCounts",
    "ChildInfo",
    "ChildNotFound",
    "ChildRestarting",
    "ChildRunning",
    "ChildSnapshot",
    "ChildState",
    "ChildUnresponsive",
    "DynamicSupervisorHandle",
    "EXIT_BAD_SPEC",
    "EXIT_GAVE_UP",
    "EXIT_OK",
    "EXIT_SHUTDOWN_TIMEOUT",
    "EXIT_START_FAILED",
    "Event",
    "ExitReason",
    "FailedToStartChild",
    "Hook",
    "KindRecovery",
    "MaxChildrenReached",
    "MaxIntensityReached",
    "MissingExtra",
    "RecoverySnapshot",
    "Shutdown",
    "SupervisorHandle",
    "SupervisorNotRunning",
    "SupervisorSnapshot",
    "current_child",
    "current_supervisor",
    "logging_hook",
    "open_supervisor",
    "render_text",
    "run",
    "run_supervisor",
    "shutdown_grace",
    "structlog_hook",
]

# supervisord's distribution is also named ``supervisor``: installed into the same
# environment, the two share this directory and each overwrites the other's files.
if _os.path.exists(_os.path.join(_os.path.dirname(__file__), "supervisord.py")):
    raise ImportError(
        f"{_os.path.dirname(__file__)} holds both trio-supervision's 'supervisor' package "
        "and supervisord's (the 'supervisor' distribution); they cannot share an "
        "environment: install them into separate virtual environments",
        name=__name__,
    )

_publish(__name__, globals())
