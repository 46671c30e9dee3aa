"""The rehab program as FHIR R4B: CarePlan (its services as activities, its retention history
as notes), Appointment (a scheduled session) and Encounter (a session attended). Every resource
is validated with fhir.resources before it leaves; the tables hold our own values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.encounter import Encounter

from tandem.errors import InvalidInput
from tandem.fhir.output import checked
from tandem.recovery.care_plans import frequencies, retention_labels, services
from tandem.recovery.storage import (
    CarePlanRow,
    CarePlanServiceRow,
    RetentionEventRow,
    TherapySessionRow,
)
from tandem.recovery.substances import substances

SERVICE_SYSTEM = "urn:tandem:recovery:service"
SUBSTANCE_SYSTEM = "urn:tandem:recovery:substance"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PLAN_STATUS = {"active": "active", "completed": "completed", "dropped_out": "revoked"}
APPOINTMENT_STATUS = {
    "booked": "booked",
    "attended": "fulfilled",
    "missed": "noshow",
    "cancelled": "cancelled",
}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def service_concept(service_id: str) -> dict[str, Any]:
    label = services()[service_id].label if service_id in services() else service_id
    return {
        "coding": [{"system": SERVICE_SYSTEM, "code": service_id, "display": label}],
        "text": label,
    }


def care_plan(
    plan: CarePlanRow,
    planned: list[CarePlanServiceRow],
    history: list[RetentionEventRow],
    names: dict[int, str],
) -> dict[str, Any]:
    labels = {s.id: s.label for s in substances()}
    retention = retention_labels()
    status = PLAN_STATUS.get(plan.retention, "unknown")
    activity = []
    for row in planned:
        ended = row.ended_on is not None
        detail: dict[str, Any] = {
            "kind": "Appointment",
            "code": service_concept(row.service),
            "status": "stopped"
            if ended or plan.retention == "dropped_out"
            else ("completed" if plan.retention == "completed" else "in-progress"),
            "scheduledString": frequencies()[row.frequency].label
            if row.frequency in frequencies()
            else row.frequency or "as arranged",
        }
        if row.staff_id in names:
            detail["performer"] = [{"display": names[row.staff_id]}]
        activity.append({"detail": detail})
    period: dict[str, str] = {"start": plan.started_on.isoformat()}
    if plan.retention != "active" and plan.retention_on is not None:
        period["end"] = plan.retention_on.isoformat()
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": str(plan.id),
        "meta": {"lastUpdated": _iso(plan.created_at)},
        "status": status,
        "intent": "plan",
        "category": [
            {"coding": [{"system": SUBSTANCE_SYSTEM, "code": s, "display": labels.get(s, s)}]}
            for s in plan.substances
        ],
        "title": plan.title or "Rehab program",
        "description": "Substances addressed: "
        + (", ".join(labels.get(s, s) for s in plan.substances) or "none listed")
        + f". Retention: {retention.get(plan.retention, plan.retention).lower()}"
        + (f" since {plan.retention_on.isoformat()}" if plan.retention_on else "")
        + ".",
        "subject": {"reference": f"Patient/{plan.patient_id}"},
        "period": period,
        "created": _iso(plan.created_at),
        "activity": activity,
    }
    if plan.counselor_id in names:
        resource["author"] = {"display": names[plan.counselor_id]}
    notes = [
        {
            "time": _iso(e.recorded_at),
            "text": f"{e.on_day.isoformat()}: {retention.get(e.retention, e.retention)}"
            + (f" ({e.note})" if e.note else ""),
        }
        for e in history
    ]
    if plan.note:
        notes.insert(0, {"text": plan.note})
    if notes:
        resource["note"] = notes
    return checked(CarePlan, resource)


def appointment(row: TherapySessionRow, names: dict[int, str]) -> dict[str, Any]:
    participants: list[dict[str, Any]] = [
        {"actor": {"reference": f"Patient/{row.patient_id}"}, "status": "accepted"}
    ]
    if row.staff_id in names:
        participants.append({"actor": {"display": names[row.staff_id]}, "status": "accepted"})
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": str(row.id),
        "meta": {"lastUpdated": _iso(row.status_at or row.created_at)},
        "status": APPOINTMENT_STATUS[row.status],
        "serviceType": [service_concept(row.service)],
        "start": _iso(row.starts_at),
        "end": _iso(row.starts_at + timedelta(minutes=row.minutes)),
        "minutesDuration": row.minutes,
        "created": _iso(row.created_at),
        "participant": participants,
    }
    if row.note:
        resource["comment"] = row.note
    if row.care_plan_id is not None:
        resource["description"] = f"Part of care plan {row.care_plan_id}"
    return checked(Appointment, resource)


def encounter(row: TherapySessionRow, names: dict[int, str]) -> dict[str, Any]:
    """An attended session as the Encounter that took place."""
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": str(row.id),
        "meta": {"lastUpdated": _iso(row.status_at or row.created_at)},
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [service_concept(row.service)],
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "period": {
            "start": _iso(row.starts_at),
            "end": _iso(row.starts_at + timedelta(minutes=row.minutes)),
        },
        "appointment": [{"reference": f"Appointment/{row.id}"}],
    }
    if row.staff_id in names:
        resource["participant"] = [{"individual": {"display": names[row.staff_id]}}]
    if row.care_plan_id is not None:
        resource["basedOn"] = [{"reference": f"CarePlan/{row.care_plan_id}"}]
    return checked(Encounter, resource)


# --------------------------------------------------------------------------- reading a create


def _instant(body: dict[str, Any], name: str) -> datetime | None:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str) or "T" not in raw:
        raise InvalidInput(name, "give a date and time with its zone")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise InvalidInput(name, f"{raw[:40]!r} is not an instant") from None
    if value.tzinfo is None:
        raise InvalidInput(name, "needs a time zone (Z or +hh:mm)")
    return value


def read_appointment(body: dict[str, Any]) -> tuple[str, str, datetime, int]:
    """(patient id, service, start, minutes) of a booked Appointment, or InvalidInput naming
    the element."""
    if body.get("status") != "booked":
        raise InvalidInput("status", "a new session is booked (status: booked)")
    patients = []
    for p in body.get("participant") or []:
        actor = p.get("actor") if isinstance(p, dict) else None
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            patients.append(ref.removeprefix("Patient/"))
    if len(patients) != 1:
        raise InvalidInput("participant", "name the one Patient (participant.actor Patient/<id>)")
    service = None
    for concept in body.get("serviceType") or []:
        for coding in (concept.get("coding") or []) if isinstance(concept, dict) else []:
            if isinstance(coding, dict) and coding.get("system") == SERVICE_SYSTEM:
                service = coding.get("code")
    if service not in services():
        raise InvalidInput(
            "serviceType", f"a coding of {SERVICE_SYSTEM}: one of {', '.join(services())}"
        )
    start = _instant(body, "start")
    if start is None:
        raise InvalidInput("start", "give when the session starts")
    end = _instant(body, "end")
    raw_minutes = body.get("minutesDuration")
    if raw_minutes is not None and (
        isinstance(raw_minutes, bool) or not isinstance(raw_minutes, int)
    ):
        raise InvalidInput("minutesDuration", "a whole number of minutes")
    if end is not None:
        if end <= start:
            raise InvalidInput("end", "the session ends after it starts")
        minutes = int((end - start).total_seconds() // 60)
        if raw_minutes is not None and raw_minutes != minutes:
            raise InvalidInput("minutesDuration", "does not match start and end")
    elif raw_minutes is not None:
        minutes = raw_minutes
    else:
        minutes = services()[str(service)].minutes or 50
    return patients[0], str(service), start, minutes
