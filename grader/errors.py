"""User-facing errors.

Every problem a user can fix (a missing file, a bad TOML key, unreadable data) is raised as a
subclass of GraderError with a one-line message naming the file or key and the problem. The CLI
turns them into a one-line message and a non-zero exit code; nothing else calls sys.exit.
"""

from __future__ import annotations


class GraderError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class AssignmentError(GraderError):
    """An assignment TOML is missing, malformed, or names an unknown experiment."""


class DataError(GraderError):
    """The Fashion-MNIST files are missing, truncated or corrupt."""


class NotebookError(GraderError):
    """A notebook cannot be read (invalid JSON, wrong schema, too large, bad encoding)."""


class ReferenceRunError(GraderError):
    """The reference runs are missing or do not match the assignment specs."""
