"""Set-up for the caseload and timeline tests: records written straight to the recovery tables
(the services of the other recovery areas are not needed to read them), relative to the
program's today."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.clock import program_today
from tandem.instruments.engine import get_instrument, score
from tandem.medications.storage import DosePlanRow, MedicationStatementRow
from tandem.recovery.storage import (
    CarePlanRow,
    CheckInRow,
    CravingRatingRow,
    DrugScreenResultRow,
    DrugScreenRow,
    QuestionnaireResponseRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.storage.db import utcnow
from tandem.storage.models import Program, User

ZONE = "America/New_York"  # program alpha's


def today() -> date:
    return program_today(ZONE, utcnow())


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(ZONE)).astimezone(UTC)


def user_id(db: Session, email: str) -> int:
    found = db.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def access_for(db: Session, sessions: sessionmaker[Session], email: str) -> Access:
    user = db.scalar(select(User).where(User.email == email))
    assert user is not None
    return Access(actor_for(user), Origin(channel="web"), db, sessions)


class Records:
    """Writes one patient's recovery records (the patient's program read from the patient)."""

    def __init__(self, db: Session, patient_id: str, program_id: int) -> None:
        self.db, self.patient_id, self.program_id = db, patient_id, program_id
        self.mine = {"patient_id": patient_id, "program_id": program_id}

    def care_plan(self, counselor: int | None, started: date, retention: str = "active") -> int:
        row = CarePlanRow(
            **self.mine,
            title="Recovery plan",
            substances=["alcohol"],
            counselor_id=counselor,
            started_on=started,
            retention=retention,
        )
        self.db.add(row)
        self.db.flush()
        return row.id

    def check_in(self, day: date) -> int:
        row = CheckInRow(
            **self.mine, day=day, checked_in_at=at(day, 20), mood="okay", source="portal"
        )
        self.db.add(row)
        self.db.flush()
        return row.id

    def craving(self, day: date, rating: int, substance: str = "alcohol") -> None:
        self.db.add(
            CravingRatingRow(
                **self.mine,
                substance=substance,
                rating=rating,
                rated_at=at(day, 20),
                day=day,
                source="portal",
            )
        )

    def use(self, day: date, used: bool, substance: str = "alcohol") -> None:
        self.db.add(
            UseDayRow(
                **self.mine,
                day=day,
                substance=substance,
                used=used,
                standard_drinks=4.0 if used else 0.0,
                source="portal",
            )
        )

    def screen(self, day: date, **results: str) -> None:
        row = DrugScreenRow(**self.mine, collected_at=at(day, 11), day=day)
        self.db.add(row)
        self.db.flush()
        for substance, result in results.items():
            self.db.add(
                DrugScreenResultRow(
                    screen_id=row.id, **self.mine, substance=substance, result=result
                )
            )

    def session(self, day: date, status: str, service: str = "individual_counseling") -> None:
        self.db.add(
            TherapySessionRow(**self.mine, service=service, starts_at=at(day, 10), status=status)
        )

    def scale(self, instrument_id: str, day: date, **answers: int) -> int:
        instrument = get_instrument(instrument_id)
        values = {item.id: min(item.allowed_values) for item in instrument.items}
        values.update(answers)
        scored = score(instrument, values)
        row = QuestionnaireResponseRow(
            **self.mine,
            instrument_id=instrument_id,
            instrument_version=scored.instrument_version,
            answers=scored.item_values,
            total=scored.total,
            scheme_id=scored.scheme_id,
            band_id=scored.band.id if scored.band else None,
            flags=[f.id for f in scored.flags],
            urgent=bool(scored.flags),
            authored_at=at(day, 19),
            day=day,
            source="portal",
        )
        self.db.add(row)
        self.db.flush()
        return scored.total

    def dose_plan(self, prescriber: int) -> int:
        row = DosePlanRow(
            **self.mine,
            medication_id="naltrexone",
            kind="maintenance",
            status="active",
            start_date=today() - timedelta(days=30),
            plan={},
            inputs={},
            prescriber_id=prescriber,
        )
        self.db.add(row)
        self.db.flush()
        return row.id

    def dose_reported(
        self, plan_id: int, day: date, taken: bool, recorded_by: int, hour: int = 9
    ) -> None:
        self.db.add(
            MedicationStatementRow(
                **self.mine,
                dose_plan_id=plan_id,
                medication_id="naltrexone",
                due_at=at(day, hour),
                time_slot="morning",
                dose_mg=50,
                taken=taken,
                recorded_by=recorded_by,
            )
        )


def program_of(db: Session, program_id: int) -> Program:
    found = db.get(Program, program_id)
    assert found is not None
    return found


def days_ago(n: int) -> date:
    return today() - timedelta(days=n)
