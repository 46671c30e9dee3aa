"""The complete table metadata: every domain's table modules, from the domain list.

Alembic's env and the drift test read `metadata`; it is assembled on first use (PEP 562),
so importing this module registers nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData


def full_metadata() -> MetaData:
    from tandem.domains import table_modules
    from tandem.storage.models import Base

    table_modules()  # importing each domain's table modules puts its tables on Base.metadata
    return Base.metadata


def __getattr__(name: str) -> Any:
    if name == "metadata":
        return full_metadata()
    raise AttributeError(name)
