"""Top navigation: each domain adds its own entry, shown to the roles that use it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    id: str
    label: str
    href: str
    roles: frozenset[str]
    order: int = 50


_ITEMS: dict[str, NavItem] = {}


def add_nav(item: NavItem) -> None:
    _ITEMS[item.id] = item


def nav_for(role: str) -> list[NavItem]:
    return sorted((i for i in _ITEMS.values() if role in i.roles), key=lambda i: (i.order, i.label))
