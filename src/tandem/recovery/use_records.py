"""Use days and drug screens: recorded and read through the data-access layer, audited.

A use day is one substance on one program day (timeline follow-back); a later report about the
same day replaces the answer and is audited as an update. A drug screen is one specimen with a
result per substance. Both are FHIR Observations (`use_fhir.py`). Services never commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import PatientOwned, audit_shown, load_patient, patient_ref, visible
from tandem.clock import check_recorded_at, program_today
from tandem.errors import InvalidInput
from tandem.recovery import use_measures
from tandem.recovery.storage import (
    CravingRatingRow,
    DrugScreenResultRow,
    DrugScreenRow,
    UseDayRow,
)
from tandem.recovery.use_measures import ScreenResult, Sex, UseReport
from tandem.storage.models import Patient

OBSERVATION = "Observation"
T = TypeVar("T")


def patient_rows(
    access: Access,
    resource_type: str,
    model: type[PatientOwned],
    statement: Select[Any],
    patient: Patient,
    query_text: str,
) -> list[Any]:
    """One patient's rows for a chart page: the actor must be allowed to search them for this
    patient; filtered by the policy and audited as a search that showed the patient."""
    access.require(Permission.SEARCH, resource_type, patient_ref(patient))
    statement = statement.where(
        model.patient_id == patient.id,
        visible(access, resource_type, model.patient_id, model.program_id),
    )
    rows = list(access.db.scalars(statement))
    audit_shown(access, resource_type, [patient.id], query_text, patient.id)
    return rows


def sex_of(patient: Patient) -> Sex | None:
    """The sex the heavy-drinking figures use: the chart's recorded gender when it is female or
    male, otherwise unknown (never guessed)."""
    return patient.gender if patient.gender in ("female", "male") else None  # type: ignore[return-value]


@dataclass(frozen=True)
class SavedUse:
    row: UseDayRow
    created: bool  # False: an earlier answer about the same day was replaced


def record_use_day(
    access: Access,
    patient_id: str,
    *,
    substance: str,
    used: bool | None,
    standard_drinks: float | None,
    day: date,
    now: datetime,
    source: str = "staff",
    fields: dict[str, str] | None = None,
) -> SavedUse:
    """Record whether the patient used `substance` on `day` (the program's calendar day).
    A later report about the same day replaces the earlier answer (audited as an update)."""
    patient = load_patient(access, patient_id, (Permission.CREATE, OBSERVATION), audit=False)
    today = program_today(patient.program.time_zone, now)
    report = use_measures.check_use(substance, used, standard_drinks, day, today, fields=fields)
    existing = access.db.scalar(
        select(UseDayRow).where(
            UseDayRow.patient_id == patient.id,
            UseDayRow.substance == report.substance,
            UseDayRow.day == report.day,
        )
    )
    detail = (
        f"{report.substance} on {report.day.isoformat()}: {'used' if report.used else 'not used'}"
    )
    if report.standard_drinks is not None:
        detail += f", {report.standard_drinks:g} standard drinks"
    if existing is not None:
        access.require(
            Permission.UPDATE, OBSERVATION, patient_ref(patient), resource_id=f"use-{existing.id}"
        )
        before = f"was {'used' if existing.used else 'not used'}" + (
            f", {existing.standard_drinks:g} drinks" if existing.standard_drinks is not None else ""
        )
        existing.used = report.used
        existing.standard_drinks = report.standard_drinks
        existing.source = source
        existing.check_in_id = None
        existing.recorded_at = now
        existing.recorded_by = access.actor.user_id or None
        access.db.flush()
        access.audit(
            "update",
            resource_type=OBSERVATION,
            resource_id=f"use-{existing.id}",
            patient_id=patient.id,
            detail=f"{detail} ({before})",
        )
        return SavedUse(existing, created=False)
    row = UseDayRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        day=report.day,
        substance=report.substance,
        used=report.used,
        standard_drinks=report.standard_drinks,
        source=source,
        recorded_at=now,
        recorded_by=access.actor.user_id or None,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=OBSERVATION,
        resource_id=f"use-{row.id}",
        patient_id=patient.id,
        detail=detail,
    )
    return SavedUse(row, created=True)


def record_drug_screen(
    access: Access,
    patient_id: str,
    *,
    collected_at: datetime,
    results: Iterable[tuple[str, str]],
    now: datetime,
    specimen: str = "urine",
    note: str = "",
    field: str = "results",
    time_field: str = "collected_at",
) -> tuple[DrugScreenRow, list[DrugScreenResultRow]]:
    """A specimen collected and its result per substance, all stored or none."""
    patient = load_patient(access, patient_id, (Permission.CREATE, OBSERVATION), audit=False)
    collected = check_recorded_at(time_field, collected_at, now)
    day = program_today(patient.program.time_zone, collected)
    checked = use_measures.check_screen(
        results, day, program_today(patient.program.time_zone, now), field
    )
    if specimen != "urine":
        raise InvalidInput("specimen", "only urine screens are recorded")
    screen = DrugScreenRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        collected_at=collected,
        day=day,
        specimen=specimen,
        note=note.strip()[:2000],
        recorded_at=now,
        recorded_by=access.actor.user_id or None,
    )
    access.db.add(screen)
    access.db.flush()
    rows = [
        DrugScreenResultRow(
            screen_id=screen.id,
            patient_id=patient.id,
            program_id=patient.program_id,
            substance=r.substance,
            result=r.result,
        )
        for r in checked
    ]
    access.db.add_all(rows)
    access.db.flush()
    for row in rows:
        access.audit(
            "create",
            resource_type=OBSERVATION,
            resource_id=f"screen-{row.id}",
            patient_id=patient.id,
            detail=f"urine screen {row.substance}: {row.result}",
        )
    return screen, rows


def record_craving(
    access: Access,
    patient_id: str,
    *,
    substance: str,
    rating: int,
    rated_at: datetime,
    now: datetime,
    source: str = "staff",
    field: str = "rating",
) -> CravingRatingRow:
    """A single 0-10 craving rating for one substance."""
    patient = load_patient(access, patient_id, (Permission.CREATE, OBSERVATION), audit=False)
    at = check_recorded_at("effectiveDateTime" if source == "api" else "rated_at", rated_at, now)
    substance_id, value = use_measures.check_craving(substance, rating, field)
    row = CravingRatingRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        substance=substance_id,
        rating=value,
        rated_at=at,
        day=program_today(patient.program.time_zone, at),
        source=source,
        recorded_at=now,
        recorded_by=access.actor.user_id or None,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=OBSERVATION,
        resource_id=f"craving-{row.id}",
        patient_id=patient.id,
        detail=f"craving {substance_id}: {value}/10",
    )
    return row


# --------------------------------------------------------------------------- reading


def use_reports(access: Access, patient: Patient, start: date, end: date) -> list[UseReport]:
    rows = patient_rows(
        access,
        OBSERVATION,
        UseDayRow,
        select(UseDayRow)
        .where(UseDayRow.day >= start, UseDayRow.day <= end)
        .order_by(UseDayRow.day, UseDayRow.substance),
        patient,
        f"patient={patient.id}&use-day=ge{start.isoformat()}&use-day=le{end.isoformat()}",
    )
    return [UseReport(r.day, r.substance, r.used, r.standard_drinks) for r in rows]


def screen_results(
    access: Access, patient: Patient, start: date, end: date
) -> list[tuple[date, ScreenResult]]:
    """(collection day, result) of every screen result of the period, oldest first."""
    access.require(Permission.SEARCH, OBSERVATION, patient_ref(patient))
    statement = (
        select(DrugScreenRow.day, DrugScreenResultRow.substance, DrugScreenResultRow.result)
        .join(DrugScreenRow, DrugScreenRow.id == DrugScreenResultRow.screen_id)
        .where(
            DrugScreenResultRow.patient_id == patient.id,
            DrugScreenRow.day >= start,
            DrugScreenRow.day <= end,
            visible(
                access,
                OBSERVATION,
                DrugScreenResultRow.patient_id,
                DrugScreenResultRow.program_id,
            ),
        )
        .order_by(DrugScreenRow.collected_at, DrugScreenResultRow.id)
    )
    found = [(d, ScreenResult(s, r)) for d, s, r in access.db.execute(statement)]
    audit_shown(
        access,
        OBSERVATION,
        [patient.id],
        f"patient={patient.id}&drug-screen=ge{start.isoformat()}&drug-screen=le{end.isoformat()}",
        patient.id,
    )
    return found
