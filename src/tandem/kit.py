"""What a domain brings to the application, as plain values (no registration on import).

`tandem.domains.DOMAINS` lists one `Domain` per folder; the app, the CLI, the demo, the
scheduler, the FHIR capability statement and Alembic read their parts from that list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class NavItem:
    """An entry of the top navigation, shown to the roles that use it."""

    id: str
    label: str
    href: str
    roles: frozenset[str]
    order: int = 50
    # A number shown beside the label (e.g. urgent questions waiting): `badge(access)` for the
    # signed-in person, None or 0 for none.
    badge: Callable[[Any], int | None] | None = None


@dataclass(frozen=True)
class ChartTab:
    """A tab of the patient's chart; `path` is appended to /patients/{id}."""

    id: str
    label: str
    path: str
    order: int = 50
    patient_label: str | None = None  # how the tab reads in the patient's own view

    def label_for(self, role: str) -> str:
        return self.patient_label if role == "patient" and self.patient_label else self.label


@dataclass(frozen=True)
class Job:
    """A scheduled job: `run(sessions, now)` every `every`, once across all server processes."""

    name: str
    every: timedelta
    run: Callable[[sessionmaker[Session], datetime], object]
    description: str = ""


# Something happened to a patient's record that another domain keeps a summary of:
# `listener(db, patient_id)` runs inside the same unit of work.
PatientListener = Callable[["Session", str], None]
# An episode of care was admitted, moved or discharged: `listener(db, episode)`, same unit of work.
EpisodeListener = Callable[["Session", Any], None]


@dataclass(frozen=True)
class Domain:
    """One domain's parts. Every field is optional; a domain lists only what it has."""

    name: str
    routers: Sequence[Any] = ()  # fastapi.APIRouter, pages and API alike
    nav: Sequence[NavItem] = ()
    chart_tabs: Sequence[ChartTab] = ()
    tables: Sequence[Any] = ()  # modules that define ORM tables on storage.models.Base
    fhir_resources: Sequence[Any] = ()  # fhir.capability.ResourceSupport
    # fhir.observations.ObservationSource: the domain's rows that /fhir/Observation shows
    observation_sources: Sequence[Any] = ()
    demo_steps: Sequence[tuple[str, Callable[..., None]]] = ()
    cli: Sequence[tuple[str, Any]] = ()  # (name, typer.Typer) groups, or (name, function) commands
    alert_listeners: Sequence[PatientListener] = ()
    episode_listeners: Sequence[EpisodeListener] = ()
    jobs: Sequence[Job] = ()
    extra: dict[str, Any] = field(default_factory=dict)
