"""The one exception root of ivr-auth and its branches.

Each class's docstring is its default message; errors from psycopg, aiohttp
and subprocesses are translated into these where they enter the project.
"""

from __future__ import annotations


class IvrAuthError(Exception):
    """ivr-auth failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(IvrAuthError):
    """The configuration is not valid."""


class StackError(IvrAuthError):
    """The local stack could not be brought up."""


class PortInUse(StackError):
    """A port the local stack needs is already taken."""


class NotInstalled(StackError):
    """A program the local stack needs is not installed."""


class AriError(IvrAuthError):
    """Asterisk's REST interface refused or failed a request."""

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AriUnavailable(AriError):
    """Asterisk's REST interface cannot be reached."""


class NodeLost(AriUnavailable):
    """The Asterisk node carrying the call went away: its events websocket
    stayed down longer than dialer.node_lost_seconds."""


class AppNotRegistered(AriError):
    """The Stasis application has no connected websocket on this Asterisk."""


class CallFailed(IvrAuthError):
    """The call could not be placed."""


class StoreError(IvrAuthError):
    """The database failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class Duplicate(StoreError):
    """A row with this key exists already."""


class NotFound(IvrAuthError):
    """No such verification."""


class Conflict(IvrAuthError):
    """The request is not in a state that allows this."""


class IdempotencyMismatch(IvrAuthError):
    """This Idempotency-Key was used before with a different request."""
