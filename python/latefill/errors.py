"""latefill's exceptions: one class per error class, each with the exit code the
``latefill`` command gives it, so that a scheduler can tell what a retry can fix.

====================  =========  ==============================================
class                 exit code  what to do
====================  =========  ==============================================
``UsageError``        2          fix the call or the pipeline file; never retry
``DataError``         3          the data cannot be processed as declared
``ContentionError``   4          another run holds the partition: retry later
``StorageError``      1          storage failed (or a bug): a retry may help
====================  =========  ==============================================

Ctrl-C raises ``KeyboardInterrupt`` (the command's exit code 130), after the claims
of the call are given back.
"""

from __future__ import annotations


class LatefillError(Exception):
    """Any error of latefill's."""

    exit_code: int = 1
    """The ``latefill`` command's exit code for this error."""
    retryable: bool = False
    """Whether running again, unchanged, can succeed."""

    @property
    def message(self) -> str:
        """The error and its causes, as the command prints it."""
        return str(self.args[0]) if self.args else ""


class UsageError(LatefillError):
    """Bad arguments, pipeline file or configuration (credentials, endpoints)."""

    exit_code = 2


class DataError(LatefillError):
    """The data cannot be processed as declared: a missing table or partition, bad
    SQL, a schema mismatch, a damaged log."""

    exit_code = 3


class ContentionError(LatefillError):
    """Another run holds the partition (its claim's lease is live)."""

    exit_code = 4
    retryable = True


class StorageError(LatefillError):
    """Storage failed, or latefill has a bug: a retry may help."""

    exit_code = 1
    retryable = True


def for_exit_code(code: int) -> type[LatefillError]:
    """The exception class of a ``latefill`` command's exit code."""
    return {2: UsageError, 3: DataError, 4: ContentionError}.get(code, StorageError)
