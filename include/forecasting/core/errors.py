"""Which failures a retry can heal.

A run that fails because the config is wrong, the data is bad or a database says "no" (unknown
host, refused connection, wrong password, missing table) fails the same way on every retry:
it should fail at once, naming the cause. Only what may pass by itself (a dropped connection,
a timeout, a deadlock, a server starting up) is worth retrying. The DAG asks ``is_permanent``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from forecasting.core.config import ConfigError


class DataError(ValueError):
    """The data cannot make this forecast (e.g. too little history): retrying will not help."""


# PostgreSQL SQLSTATE classes that describe the request, not the moment: data exceptions (22),
# integrity (23), authorization (28), invalid catalog / database (3D), syntax, undefined
# objects and privileges (42).
_PERMANENT_SQLSTATE_CLASSES = ("22", "23", "28", "3D", "42")
# SQLSTATEs that pass by themselves: serialization failure, deadlock, too many connections,
# server shutting down or starting up, query canceled by a timeout.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "53300", "57P01", "57P02", "57P03", "57014", "55P03"}
# What a client library says when it cannot reach a server that is not there.
_UNREACHABLE = (
    "connection refused",
    "could not translate host name",
    "name or service not known",
    "nodename nor servname",
    "no such file or directory",  # a Unix socket or SQLite path that does not exist
    "unable to open database file",
    "password authentication failed",
    "authentication failed",
    "does not exist",
)
_SQLITE_PERMANENT = ("no such table", "no such column", "syntax error", "unable to open database file")
# XGBoost raises one class for everything; what it says when workers cannot talk (Dask,
# its collective) may pass, anything else (data it refuses, a model file it cannot read) will not.
_XGBOOST_TRANSIENT = ("socket", "connect", "timed out", "timeout", "collective", "rabit", "worker")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)  # SQLAlchemy wraps the driver's error
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield orig
            seen.add(id(orig))
        current = current.__cause__ or current.__context__


def is_permanent(error: BaseException) -> bool:
    """True when retrying cannot help; False for anything that might pass by itself."""
    for cause in _chain(error):
        if isinstance(cause, ConfigError | DataError):  # a failed validation is a DataError
            return True
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate:
            if sqlstate in _TRANSIENT_SQLSTATES:
                return False
            if sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES:
                return True
        if isinstance(cause, sqlite3.OperationalError):
            message = str(cause).lower()
            if "locked" in message or "busy" in message:
                return False
            if any(text in message for text in _SQLITE_PERMANENT):
                return True
        module = type(cause).__module__
        if module.startswith("xgboost") and type(cause).__name__ == "XGBoostError":
            message = str(cause).lower().partition("stack trace:")[0]  # not the trace's paths
            return not any(text in message for text in _XGBOOST_TRANSIENT)
        if module.startswith(("sqlalchemy", "psycopg", "redis")):
            name = type(cause).__name__
            if name in ("ArgumentError", "NoSuchModuleError", "AuthenticationError"):
                return True
            message = str(cause).lower()
            if "timeout" in message or "timed out" in message or "closed the connection" in message:
                return False
            if any(text in message for text in _UNREACHABLE):
                return True
    return False
