"""Refusals of the simulated cloud, shaped like the real services' API errors.

The world model raises these with the real services' status codes and messages, so the HTTP face
only serialises them and the in-process drivers see exactly the refusals a real cloud gives.
"""

from __future__ import annotations


class CloudError(Exception):
    """An API-level refusal: ``status`` is the HTTP status the real service answers."""

    status = 500
    nova_key = "computeFault"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(CloudError):
    status = 400
    nova_key = "badRequest"


class Forbidden(CloudError):
    status = 403
    nova_key = "forbidden"


class NotFound(CloudError):
    status = 404
    nova_key = "itemNotFound"


class Conflict(CloudError):
    status = 409
    nova_key = "conflictingRequest"
