"""What the loopback MTProto server can answer instead of the truth (test-only).

:class:`RpcFailure` is an ``rpc_error`` (with the common ones as constants);
:class:`FaultAction` a fault that is not an RPC error (drop the connection, never
answer); :class:`Fault` one injected fault, as :meth:`MTProtoServer.fail_next`
returns it, and :func:`take_fault` the rule that picks the fault a call meets.
Nothing here needs Pyrogram.
"""

from __future__ import annotations

import contextlib
import enum
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from ._mtproto_accounts import Account

__all__ = [
    "AUTH_KEY_DUPLICATED",
    "AUTH_KEY_UNREGISTERED",
    "INPUT_CONSTRUCTOR_INVALID",
    "METHOD_INVALID",
    "RPC_CALL_FAIL",
    "Fault",
    "FaultAction",
    "RpcFailure",
    "take_fault",
]


@attrs.frozen
class RpcFailure:
    """An ``rpc_error`` the server answers a call with.

    Pyrogram maps ``code`` to an exception family and ``message`` (digits replaced by
    ``_X``) to a class; the number in the message becomes ``exc.value``. A message that
    Pyrogram does not know makes it append a line to ``unknown_errors.txt`` in the
    current working directory, so prefer known messages.

    Attributes:
        code: the error code (420, 401, 406, 500, ...).
        message: the error message (``"FLOOD_WAIT_30"``, ...).
    """

    code: int
    message: str

    @classmethod
    def flood_wait(cls, seconds: int) -> RpcFailure:
        """Return a 420 ``FLOOD_WAIT_<seconds>``, raised as ``pyrogram.errors.FloodWait``.

        Args:
            seconds: the wait, which becomes ``FloodWait.value``.

        Returns:
            The failure.
        """
        return cls(420, f"FLOOD_WAIT_{seconds}")


AUTH_KEY_UNREGISTERED: Final = RpcFailure(401, "AUTH_KEY_UNREGISTERED")
"""401, raised as ``pyrogram.errors.AuthKeyUnregistered`` (an ``Unauthorized``)."""
AUTH_KEY_DUPLICATED: Final = RpcFailure(406, "AUTH_KEY_DUPLICATED")
"""406, raised as ``pyrogram.errors.AuthKeyDuplicated`` (a ``NotAcceptable``)."""
RPC_CALL_FAIL: Final = RpcFailure(500, "RPC_CALL_FAIL")
"""500, raised as ``pyrogram.errors.RpcCallFail`` (an ``InternalServerError``; Pyrogram
retries 500s ``retries`` times, 0.5 s apart, before raising)."""
METHOD_INVALID: Final = RpcFailure(400, "METHOD_INVALID")
"""400, the answer to a call the server has no responder for."""
INPUT_CONSTRUCTOR_INVALID: Final = RpcFailure(400, "INPUT_CONSTRUCTOR_INVALID")


class FaultAction(enum.Enum):
    """A fault that is not an RPC error."""

    DROP_CONNECTION = "drop-connection"
    """Close the TCP connection instead of answering the call."""
    NO_REPLY = "no-reply"
    """Swallow the call: it is never answered (the connection stays healthy)."""


@attrs.define(eq=False)
class Fault:
    """An injected fault, as returned by :meth:`MTProtoServer.fail_next`.

    Attributes:
        account: the account it applies to; None for every account.
        method: the method it applies to (lower-cased name); None for any RPC call
            (service messages such as ``Ping`` are only matched by name).
        action: the RPC error to answer with, or a :class:`FaultAction`.
        remaining: how many more calls it applies to; None for unlimited.
        hits: how many calls it has applied to.
    """

    account: Account | None
    method: str | None
    action: RpcFailure | FaultAction
    remaining: int | None
    hits: int = 0
    # the server's list of active faults, which cancel() takes it out of
    _active: list[Fault] | None = attrs.field(default=None, repr=False)

    def cancel(self) -> None:
        """Remove the fault; calls are answered normally again."""
        if self._active is not None:
            with contextlib.suppress(ValueError):
                self._active.remove(self)
            self._active = None

    def _matches(self, account: Account | None, names: list[str], service: bool) -> bool:
        if self.account is not None and self.account is not account:
            return False
        if self.method is None:
            return not service
        return any(name.lower() == self.method for name in names)


def take_fault(
    faults: list[Fault], account: Account | None, names: list[str], service: bool
) -> Fault | None:
    """Find the first fault that applies to a call, count the hit, and retire it when spent.

    Args:
        faults: the active faults, in the order they were added.
        account: the caller's account (None before it is known).
        names: the call's method names, wrappers first.
        service: whether the call is a service message (``Ping``, ...).

    Returns:
        The fault that applies, or None.
    """
    for fault in faults:
        if fault._matches(account, names, service):
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    fault.cancel()
            return fault
    return None
