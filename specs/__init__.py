"""Declaring supervision trees: frozen, validated specs.

Nothing in this package imports trio; ``supervisor`` runs what is declared
here. The pure restart policy that ``supervisor`` carries out is public in its
own namespace, :mod:`specs.policy`. The one private name the runtime takes from
here, ``specs._spec.accepts_task_status`` (does a ``start`` take trio's
handshake), is internal: it is imported from that module by name, never
re-exported.
"""

from __future__ import annotations

from ._errors import SpecError as SpecError
from ._sharding import shard_for as shard_for
from ._spec import ALL_SIGNIFICANT as ALL_SIGNIFICANT
from ._spec import ANY_SIGNIFICANT as ANY_SIGNIFICANT
from ._spec import BRUTAL_KILL as BRUTAL_KILL
from ._spec import DEFAULT_INTENSITY as DEFAULT_INTENSITY
from ._spec import DEFAULT_PERIOD as DEFAULT_PERIOD
from ._spec import DEFAULT_SHUTDOWN as DEFAULT_SHUTDOWN
from ._spec import FIELD_REPORT_POLICY as FIELD_REPORT_POLICY
from ._spec import INFINITY as INFINITY
from ._spec import NEVER as NEVER
from ._spec import ONE_FOR_ALL as ONE_FOR_ALL
from ._spec import ONE_FOR_ONE as ONE_FOR_ONE
from ._spec import PERMANENT as PERMANENT
from ._spec import REST_FOR_ONE as REST_FOR_ONE
from ._spec import SUPERVISOR as SUPERVISOR
from ._spec import TEMPORARY as TEMPORARY
from ._spec import TRANSIENT as TRANSIENT
from ._spec import WORKER as WORKER
from ._spec import AnySupervisorSpec as AnySupervisorSpec
from ._spec import AutoShutdown as AutoShutdown
from ._spec import Backoff as Backoff
from ._spec import BrutalKill as BrutalKill
from ._spec import ChildKind as ChildKind
from ._spec import ChildSpec as ChildSpec
from ._spec import Classifier as Classifier
from ._spec import Decision as Decision
from ._spec import DynamicSupervisorSpec as DynamicSupervisorSpec
from ._spec import FailurePolicy as FailurePolicy
from ._spec import KindRule as KindRule
from ._spec import Restart as Restart
from ._spec import ShutdownValue as ShutdownValue
from ._spec import Strategy as Strategy
from ._spec import SupervisorSpec as SupervisorSpec
from ._spec import validate as validate
from ._surface import publish as _publish

__all__ = [
    "ALL_SIGNIFICANT",
    "ANY_SIGNIFICANT",
    "AnySupervisorSpec",
    "AutoShutdown",
    "BRUTAL_KILL",
    "Backoff",
    "BrutalKill",
    "ChildKind",
    "ChildSpec",
    "Classifier",
    "DEFAULT_INTENSITY",
    "DEFAULT_PERIOD",
    "DEFAULT_SHUTDOWN",
    "Decision",
    "DynamicSupervisorSpec",
    "FIELD_REPORT_POLICY",
    "FailurePolicy",
    "INFINITY",
    "KindRule",
    "NEVER",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "Restart",
    "SUPERVISOR",
    "ShutdownValue",
    "SpecError",
    "Strategy",
    "SupervisorSpec",
    "TEMPORARY",
    "TRANSIENT",
    "WORKER",
    "shard_for",
    "validate",
]

_publish(__name__, globals())
