"""Exit reasons: how a child's run ended, as a typed value.

The one classification step of the runtime: :meth:`ExitReason.of` turns a
child's outcome (an exception, or none) into the reason its supervisor's
policy reads. The spec's classifier (the child's, else its tree's: a plain
``(exception) -> exception`` such as ``workers.DEFAULT``) runs here, once,
turning a library's exception into a typed failure; a worker's own
classifier may already have done so inside the worker. The typed failure
then declares, by duck-typed class attributes, whether it is a normal exit,
what delay it asks for and its failure kind, which the supervisor's
``failure_policy`` decides on.
"""

from __future__ import annotations

import logging
import math
import sys
import traceback
from collections.abc import Callable

import attrs

from specs.policy import ExitKind

from ._exceptions import MaxIntensityReached, Shutdown

logger = logging.getLogger("supervisor")

#: The failure kind of an exception that declares none.
UNKNOWN_KIND = "unknown"


@attrs.frozen
class ExitReason:
    """Why a child's run ended.

    Attributes:
        kind: ``NORMAL`` (it returned), ``SHUTDOWN`` (it raised
            :class:`~supervisor.Shutdown`, or a subtree gave up or shut itself
            down) or ``ABNORMAL`` (any other exception).
        exception: What it raised, if anything.
        restart_delay: A delay the failure asks for before the next restart
            (a FloodWait's seconds); it wins over the supervisor's backoff.
        failure_kind: The failure's kind, for the supervisor's
            ``failure_policy`` and statistics: what it declares
            (``supervisor_failure_kind``), else ``"unknown"``; ``None`` for
            what is no failure (a normal return, a ``Shutdown``, a subtree
            that gave up) unless it declares a kind.
    """

    kind: ExitKind
    exception: BaseException | None = attrs.field(default=None, eq=False)
    restart_delay: float | None = None
    failure_kind: str | None = None

    def __str__(self) -> str:
        if self.exception is None:
            return self.kind.value
        if isinstance(self.exception, Shutdown):
            if self.exception.reason is None:
                return "shutdown"
            return f"shutdown: {self.exception.reason!r}"
        return repr(self.exception)

    @classmethod
    def of(
        cls,
        exception: BaseException | None,
        classifier: Callable[[BaseException], BaseException] | None = None,
    ) -> ExitReason:
        """The reason a child's outcome means: ``None`` is a normal exit.

        ``classifier`` (the spec's) first maps the exception to a typed
        failure; ``Shutdown`` and a subtree's ``MaxIntensityReached`` are the
        supervisor's own and are not classified. A failure may then declare
        itself: an exception with a boolean attribute
        ``supervisor_normal_exit`` set is a ``SHUTDOWN`` exit when true (a
        TRANSIENT child stays down, like OTP's ``{shutdown, Reason}``), one
        with a number ``supervisor_restart_delay`` asks for that delay, and
        one with a str ``supervisor_failure_kind`` is a failure of that kind.
        :class:`~supervisor.Shutdown` and a subtree's
        :class:`~supervisor.MaxIntensityReached` are ``SHUTDOWN`` exits too.
        """
        if exception is None:
            return NORMAL_EXIT
        own = isinstance(exception, Shutdown | MaxIntensityReached)
        if classifier is not None and not own:
            exception = classify(classifier, exception)
        delay = getattr(exception, "supervisor_restart_delay", None)
        if (
            not isinstance(delay, int | float)
            or isinstance(delay, bool)
            or not 0 <= delay < math.inf
        ):
            delay = None
        declared = getattr(exception, "supervisor_failure_kind", None)
        if not isinstance(declared, str) or not declared or not declared.isprintable():
            declared = None
        if own or getattr(exception, "supervisor_normal_exit", False) is True:
            return cls(ExitKind.SHUTDOWN, exception, delay, declared)
        return cls(ExitKind.ABNORMAL, exception, delay, declared or UNKNOWN_KIND)


def classify(
    classifier: Callable[[BaseException], BaseException], exception: BaseException
) -> BaseException:
    """``classifier(exception)``, contained: a failing classifier changes nothing.

    Its first failure is logged at ERROR (see :class:`ContainedClassifier`);
    the original exception stays the reason. A new failure gets the original
    as its ``__cause__``, so the traceback is kept.
    """
    try:
        mapped = classifier(exception)
    except Exception as error:
        _classifier_failed(classifier, exception, error)
        return exception
    if not isinstance(mapped, BaseException):
        _classifier_failed(
            classifier,
            exception,
            TypeError(f"classifier returned {type(mapped).__name__}, not an exception"),
        )
        return exception
    if mapped is not exception and mapped.__cause__ is None:
        mapped.__cause__ = exception
    return mapped


@attrs.define(eq=False)
class ContainedClassifier:
    """A spec's classifier as the runtime runs it: a failure of it is reported once.

    Attributes:
        classifier: The spec's callable.
        failures: How many exceptions it failed on.
    """

    classifier: Callable[[BaseException], BaseException]
    failures: int = 0

    def __call__(self, exception: BaseException) -> BaseException:
        return self.classifier(exception)


def _classifier_failed(
    classifier: Callable[[BaseException], BaseException],
    exception: BaseException,
    error: BaseException,
) -> None:
    if isinstance(classifier, ContainedClassifier):
        classifier.failures += 1
        if classifier.failures > 1:
            return
        classifier = classifier.classifier
    message = (
        f"classifier {classifier!r} failed on {type(exception).__name__}; reported once, "
        "the exception stays the exit reason"
    )
    try:
        logger.error("%s", message, exc_info=error)
    except Exception:
        text = "".join(traceback.format_exception(error))
        try:
            print(f"{message}:\n{text}", file=sys.stderr, end="", flush=True)
        except Exception:  # a closed stderr must not end the tree either
            return


NORMAL_EXIT = ExitReason(ExitKind.NORMAL)
STOPPED_EXIT = ExitReason(ExitKind.SHUTDOWN)


def release_frames(exception: BaseException | None) -> None:
    """Drop the local variables of the finished frames an exception's traceback holds.

    A child's exit reason is kept (``last_exit``, the next incarnation's
    context, the event history). Its traceback's frames would keep the
    crashed incarnation's locals alive, among them its own context with the
    exit before it: a chain through every incarnation a child ever had. The
    traceback still formats (code and line numbers stay); only locals go.
    """
    if (
        exception is not None
        and exception.__cause__ is None
        and exception.__context__ is None
        and not isinstance(exception, BaseExceptionGroup)
    ):
        traceback.clear_frames(exception.__traceback__)  # the common case: one exception
        return
    seen: set[int] = set()
    stack = [exception]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.extend((current.__cause__, current.__context__))
