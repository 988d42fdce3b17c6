"""Errors that edgeseg raises for user mistakes and missing optional dependencies.

The CLI prints these as one clear message (no traceback); anything else is a bug.
"""


class EdgesegError(Exception):
    """Base class for errors a user can fix (bad input, missing file, missing extra)."""


class InputError(EdgesegError, ValueError):
    """A value the user passed is wrong. The message names the field, the value and what was expected."""


class ArtifactError(EdgesegError):
    """A model file or its JSON sidecar is missing, corrupt or inconsistent."""


class MissingDependencyError(EdgesegError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def expect(condition: bool, field: str, value, expected: str) -> None:
    """Raise :class:`InputError` naming ``field``, its ``value`` and what was ``expected``."""
    if not condition:
        raise InputError(f"{field}: got {value!r}, expected {expected}")
