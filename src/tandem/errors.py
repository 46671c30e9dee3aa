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


class InvalidAddress(InvalidInput):
    """A part of the address (a path parameter) that cannot name anything, such as an id that is
    not a number: 400, naming the part and what it must be."""


class NotFound(LookupError):
    """No such record (or none this request may know of)."""


class Conflict(Exception):
    """The record changed since the client read it (a stale If-Match version)."""
