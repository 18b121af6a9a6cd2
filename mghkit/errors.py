"""The small exception hierarchy. Library code raises these; only the CLI catches them.

Every error carries the exit code the CLI should use: 2 for a user's mistake (bad input or
usage), 1 for a runtime failure (model, network, budget).
"""

from __future__ import annotations


class MghkitError(Exception):
    """Base class: an error with an actionable one-line message."""

    exit_code = 1


class UsageError(MghkitError):
    """Bad usage: an unknown option value, a missing file, conflicting options."""

    exit_code = 2


class InputError(UsageError):
    """Bad input data; the message names the file, line and field.

    >>> str(InputError("expected a string", path="t.jsonl", line=3, field="query"))
    't.jsonl:3: query: expected a string'
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        if field:
            where += f"{field}: "
        super().__init__(where + message)


class RuntimeFailure(MghkitError):
    """A failure that is not the user's input: a model, the network, a budget."""

    exit_code = 1


class NotImplementedYet(MghkitError):
    """A command whose capability has not landed yet."""

    exit_code = 1

    def __init__(self, command: str) -> None:
        super().__init__(f"`mghkit {command}` is not implemented yet")
