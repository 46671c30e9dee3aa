"""Errors every domain raises, and every adapter (page, FHIR route, CLI) translates.

They name what the person must fix; adapters never parse the message.
"""

from __future__ import annotations


class InvalidInput(ValueError):
    """Bad input, with the field it concerns (a FHIR path, a form field or a CLI option)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class NotFound(LookupError):
    """No such record (or none this request may know of)."""


class Conflict(Exception):
    """The record changed since the client read it (a stale If-Match version)."""
