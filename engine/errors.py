"""The one exception tree of the project.

Every error a user can cause derives from :class:`ProfilesError`; the CLI prints its message as a
single ``error: ...`` line and exits 1. Context lives in attributes so callers can act on it; the
message is built once, here, so it reads the same everywhere.
"""

from __future__ import annotations

from pathlib import Path


class ProfilesError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(ProfilesError, ValueError):
    """The project file (or a definition in it) is invalid.

    Parameters
    ----------
    reason
        What is wrong, phrased so the user knows what to change.
    path
        The project file.
    section
        The table the problem is in, e.g. ``traits[total_inbounds]``.
    key
        The offending key, when there is one.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.section = section
        self.key = key
        where = [p for p in (self.path, section, f"key '{key}'" if key else None) if p]
        super().__init__(f"{': '.join(where)}: {reason}" if where else reason)


class InputError(ProfilesError, ValueError):
    """An input file cannot be read at all (unknown suffix, missing, not what it says it is)."""

    def __init__(self, reason: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.line = line
        where = self.path or ""
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {reason}" if where else reason)


class IdentityError(ProfilesError):
    """Identity resolution cannot proceed (e.g. invalid rules discovered at run time)."""


class NotFoundError(ProfilesError, LookupError):
    """A profile, identifier or trait the user named does not exist."""


class StoreError(ProfilesError):
    """The DuckDB store cannot be used: locked by another writer, too new, or damaged."""


class NotFittedError(ProfilesError, AttributeError):
    """A model was used before ``fit``; also what scikit-learn's check expects (AttributeError)."""


class DataError(ProfilesError):
    """There is too little data for the requested computation; the message says what is missing."""
