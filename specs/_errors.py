"""The exceptions of the ``specs`` package."""

from __future__ import annotations


class SpecError(ValueError):
    """A child or supervisor specification is invalid.

    Raised when a spec is constructed (specs validate themselves) and by
    :func:`specs.validate`. The message names the offending child (or
    supervisor) and field, like OTP's ``{invalid_shutdown, X}`` does.

    Attributes:
        owner: The id of the child, or the name of the supervisor, at fault.
        field: The name of the field at fault.
    """

    def __init__(self, owner: str, field: str, problem: str) -> None:
        self.owner = owner
        self.field = field
        self.problem = problem
        super().__init__(f"{owner}: field {field!r}: {problem}")
