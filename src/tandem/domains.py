"""The one list of domains. Each line names a folder's `domain` module, whose `DOMAIN` says
what that domain brings: routers, pages, navigation, chart tabs, tables, FHIR resources,
demo steps, CLI commands, listeners and scheduled jobs. The app, the CLI, the demo, Alembic
and the scheduler read everything from here; no module registers anything when imported.

Adding a domain: a folder with a `domain.py`, and one line below (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from importlib import import_module
from typing import Any

from tandem.kit import ChartTab, Domain, Job, NavItem, PatientListener

DOMAIN_MODULES: tuple[str, ...] = (
    "tandem.web.domain",  # sign-in, administration, the audit trail, FHIR metadata
    "tandem.patients.domain",  # patients, episodes of care, the chart
    "tandem.alerts.domain",  # alerts to the care team
    "tandem.instruments.domain",  # scales as data, scoring
    "tandem.withdrawal.domain",  # detox monitoring
    "tandem.medications.domain",  # monographs, screening, dose plans, doses
    "tandem.outcomes.domain",  # de-identified program counts for research
    "tandem.choice.domain",  # consent (42 CFR Part 2), disclosures and their accounting
)


@cache
def domains() -> tuple[Domain, ...]:
    return tuple(import_module(name).DOMAIN for name in DOMAIN_MODULES)


def _each(part: str) -> Iterator[Any]:
    for domain in domains():
        yield from getattr(domain, part)


def routers() -> list[Any]:
    return list(_each("routers"))


@cache
def nav_items() -> tuple[NavItem, ...]:
    return tuple(sorted(_each("nav"), key=lambda i: (i.order, i.label)))


def nav_for(role: str) -> list[NavItem]:
    return [item for item in nav_items() if role in item.roles]


@cache
def chart_tabs() -> tuple[ChartTab, ...]:
    return tuple(sorted(_each("chart_tabs"), key=lambda t: (t.order, t.label)))


def table_modules() -> list[Any]:
    return list(_each("tables"))


def fhir_resources() -> list[Any]:
    return list(_each("fhir_resources"))


def demo_steps() -> list[tuple[str, Any]]:
    return list(_each("demo_steps"))


def cli_commands() -> list[tuple[str, Any]]:
    return list(_each("cli"))


@cache
def alert_listeners() -> tuple[PatientListener, ...]:
    return tuple(_each("alert_listeners"))


@cache
def episode_listeners() -> tuple[Any, ...]:
    return tuple(_each("episode_listeners"))


def scheduled_jobs() -> list[Job]:
    return list(_each("jobs"))
