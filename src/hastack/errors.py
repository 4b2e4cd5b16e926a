"""hastack's exceptions, in one place.

Drivers translate their libraries' errors into these at their edge; the engine decides what to
do by class: a :class:`TransientError` is retried on a later tick, a :class:`PermanentError`
becomes a verdict that needs a human.  The loop never dies on either.
"""

from __future__ import annotations


class HastackError(Exception):
    """Base of every error hastack raises on purpose."""


class TransientError(HastackError):
    """Worth retrying: a timeout, a 5xx, a store that did not answer."""


class PermanentError(HastackError):
    """Retrying will not help: bad configuration, a refusal that will not change by itself."""


class ConfigError(PermanentError):
    """The configuration is invalid; the message names the place and the problem."""


class StoreUnavailable(TransientError):
    """The store (sqlite file, etcd cluster) could not be read or written."""


class RevisionConflict(HastackError):
    """A compare-and-set lost: the key changed since it was read (or exists / does not)."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{key}: expected revision {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class LeadershipLost(HastackError):
    """This controller no longer holds the lease the action was guarded by."""
