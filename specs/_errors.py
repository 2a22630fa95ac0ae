"""The exceptions of the ``specs`` package."""

from __future__ import annotations


class SpecError(ValueError):
    """A child or supervisor specification is invalid.

    Raised when a spec is constructed (specs validate themselves, every
    field, on construction), by :func:`specs.validate`, and by the runtime
    before it runs a tree. It is the only exception a bad spec value raises:
    a wrong type, a number out of range (negative, NaN, an int too large for
    a float), an odd id, a ``start`` that is not async, a tree that contains
    itself or is nested too deep. The message names the offending child (or
    supervisor; a path such as ``root/db/conn`` from ``validate``) and field,
    like OTP's ``{invalid_shutdown, X}`` does. It never shows a child's
    ``args``, which may hold secrets.

    Attributes:
        owner: The id of the child, the name of the supervisor, or the path
            to either, at fault.
        field: The name of the field at fault.
        problem: What is wrong with it, and what is allowed.
    """

    def __init__(self, owner: str, field: str, problem: str) -> None:
        self.owner = owner
        self.field = field
        self.problem = problem
        super().__init__(f"{owner}: field {field!r}: {problem}")
