"""The rehab program as FHIR R4B: CarePlan (its services as activities, its retention history
as notes), Appointment (a scheduled session) and Encounter (a session attended). Every resource
is validated with fhir.resources before it leaves; the tables hold our own values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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


# --------------------------------------------------------------------------- reading a CarePlan

# What a client may write, by element: Tandem stores these.
CARE_PLAN_STORED = ("status", "intent", "category", "title", "subject", "period", "activity")
# Elements Tandem writes itself from what it stores: accepted when they say what Tandem says
# after the write (a CarePlan read, changed and PUT back), refused by name otherwise.
CARE_PLAN_WRITTEN = ("description", "note", "author", "created")
# Server-managed or merely naming the resource.
CARE_PLAN_IGNORED = ("resourceType", "id", "meta")
RETENTION_OF_STATUS = {fhir: ours for ours, fhir in PLAN_STATUS.items()}
ACTIVITY_DETAIL = ("kind", "code", "scheduledString", "status", "performer")


@dataclass(frozen=True)
class CarePlanInput:
    patient_id: str
    retention: str  # active | completed | dropped_out
    substances: tuple[str, ...]
    services: tuple[tuple[str, str], ...]  # (service id, frequency id)
    title: str
    started_on: date | None
    ended_on: date | None
    written: dict[str, Any]  # the CARE_PLAN_WRITTEN elements given, and activity's own
    activity_written: tuple[dict[str, Any], ...]


def _date(value: Any, name: str) -> date:
    if not isinstance(value, str) or len(value) != 10:
        raise InvalidInput(name, "a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(name, f"{value[:40]!r} is not a date") from None


def _frequency(value: Any, name: str) -> str:
    known = frequencies()
    if isinstance(value, str):
        for term in known.values():
            if value in (term.id, term.label):
                return term.id
    raise InvalidInput(name, f"how often: one of {', '.join(t.label for t in known.values())}")


def read_care_plan(body: dict[str, Any]) -> CarePlanInput:
    """What a CarePlan body asks Tandem to store, or InvalidInput naming the element. Every
    element Tandem does not store is refused by name: nothing is dropped silently."""
    for name in body:
        if name not in (*CARE_PLAN_STORED, *CARE_PLAN_WRITTEN, *CARE_PLAN_IGNORED):
            raise InvalidInput(name, "Tandem does not store this element: leave it out")
    status = body.get("status")
    if status not in RETENTION_OF_STATUS:
        raise InvalidInput(
            "status", "active, completed or revoked (dropped out): " + f"not {str(status)[:20]!r}"
        )
    if body.get("intent") != "plan":
        raise InvalidInput("intent", "a rehab program is a plan (intent: plan)")
    subject = body.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str) or not ref.startswith("Patient/") or len(ref) <= 8:
        raise InvalidInput("subject", "name the patient (subject.reference Patient/<id>)")
    known_substances = {s.id for s in substances()}
    chosen: list[str] = []
    for i, concept in enumerate(body.get("category") or []):
        codings = concept.get("coding") if isinstance(concept, dict) else None
        codes = [
            c.get("code")
            for c in codings or []
            if isinstance(c, dict) and c.get("system") == SUBSTANCE_SYSTEM
        ]
        if len(codes) != 1 or codes[0] not in known_substances:
            raise InvalidInput(
                f"category[{i}]",
                f"a substance the plan addresses: a coding of {SUBSTANCE_SYSTEM}, one of "
                + ", ".join(sorted(known_substances)),
            )
        chosen.append(str(codes[0]))
    planned: list[tuple[str, str]] = []
    activity_written: list[dict[str, Any]] = []
    activities = body.get("activity") or []
    if not isinstance(activities, list):
        raise InvalidInput("activity", "a list of the plan's services")
    for i, activity in enumerate(activities):
        where = f"activity[{i}]"
        if not isinstance(activity, dict) or set(activity) - {"detail"}:
            extra = sorted(set(activity) - {"detail"}) if isinstance(activity, dict) else []
            raise InvalidInput(
                f"{where}.{extra[0]}" if extra else where,
                "Tandem stores a service as activity.detail (code, scheduledString) only",
            )
        detail = activity.get("detail")
        if not isinstance(detail, dict):
            raise InvalidInput(f"{where}.detail", "the service (code and how often)")
        for name in detail:
            if name not in ACTIVITY_DETAIL:
                raise InvalidInput(
                    f"{where}.detail.{name}", "Tandem does not store this element: leave it out"
                )
        if detail.get("kind", "Appointment") != "Appointment":
            raise InvalidInput(f"{where}.detail.kind", "a service is kept as Appointments")
        code = detail.get("code")
        codings = code.get("coding") if isinstance(code, dict) else None
        service = next(
            (
                c.get("code")
                for c in codings or []
                if isinstance(c, dict) and c.get("system") == SERVICE_SYSTEM
            ),
            None,
        )
        if service not in services():
            raise InvalidInput(
                f"{where}.detail.code",
                f"a coding of {SERVICE_SYSTEM}: one of {', '.join(services())}",
            )
        frequency = _frequency(detail.get("scheduledString"), f"{where}.detail.scheduledString")
        planned.append((str(service), frequency))
        activity_written.append(
            {k: detail[k] for k in ("status", "performer") if k in detail}
            | {"_at": where, "_service": str(service)}
        )
    period = body.get("period")
    if period is not None and (not isinstance(period, dict) or set(period) - {"start", "end"}):
        raise InvalidInput("period", "the plan's start (and its end, once it has ended)")
    period = period or {}
    started_on = _date(period["start"], "period.start") if "start" in period else None
    ended_on = _date(period["end"], "period.end") if "end" in period else None
    title = body.get("title", "")
    if not isinstance(title, str):
        raise InvalidInput("title", "text")
    return CarePlanInput(
        patient_id=ref.removeprefix("Patient/"),
        retention=RETENTION_OF_STATUS[str(status)],
        substances=tuple(chosen),
        services=tuple(planned),
        title=title,
        started_on=started_on,
        ended_on=ended_on,
        written={k: body[k] for k in CARE_PLAN_WRITTEN if k in body},
        activity_written=tuple(activity_written),
    )


def _details(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A CarePlan's services by code, each as it stands (an ended one is kept as stopped)."""
    current: dict[str, dict[str, Any]] = {}
    for activity in resource.get("activity") or []:
        detail = activity["detail"]
        code = detail["code"]["coding"][0]["code"]
        if code not in current or detail.get("status") != "stopped":
            current[code] = detail
    return current


def check_written(given: CarePlanInput, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Elements Tandem writes itself are accepted when they say what Tandem said (the plan as
    the client read it) or says now (after the write, in the same unit of work); otherwise
    refused by name: nothing a client sends is dropped silently."""
    for name, value in given.written.items():
        if value not in (before.get(name), after.get(name)):
            raise InvalidInput(
                name, "Tandem writes this element from the plan: leave it out or as read"
            )
    was, now = _details(before), _details(after)
    for written in given.activity_written:
        service = written["_service"]
        for name in ("status", "performer"):
            if name in written and written[name] not in (
                was.get(service, {}).get(name),
                now.get(service, {}).get(name),
            ):
                raise InvalidInput(
                    f"{written['_at']}.detail.{name}",
                    "Tandem writes this element from the plan: leave it out or as read",
                )
