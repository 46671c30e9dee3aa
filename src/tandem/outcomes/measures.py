"""Program-level, de-identified counts: what a researcher may see. No name, identifier or date
of a patient leaves here, and small counts are not shown exactly."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from tandem.access.guard import Access
from tandem.access.policy import ACTIONS, may
from tandem.storage.models import Episode, Patient, Program

RESOURCE = ACTIONS["see_outcomes"][1]  # MeasureReport
# Counts from 1 to 10 are shown as "fewer than 11": the CMS cell size suppression policy
# (CMS Data Release Policy / Cell Size Suppression Policy, "no cell (e.g. admittances,
# discharges, patients) containing a value of 1 to 10 can be reported directly").
SMALL_CELL = 11


def shown_count(n: int) -> str:
    if 0 < n < SMALL_CELL:
        return f"fewer than {SMALL_CELL}"
    return str(n)


@dataclass(frozen=True)
class ProgramCounts:
    program: str
    patients: str
    in_care: dict[str, str]  # phase -> count of open episodes
    discharged: str


def program_counts(access: Access) -> list[ProgramCounts]:
    """The counts of every program the actor may see outcomes for (refused, and audited, when
    there is none)."""
    programs = [
        p
        for p in sorted(access.actor.program_ids)
        if may(access.actor, "see_outcomes", program_id=p)
    ]
    if not programs:
        access.require(*ACTIONS["see_outcomes"], program_id=-1)
    db = access.db
    names = dict(db.execute(select(Program.id, Program.name).where(Program.id.in_(programs))).all())
    patients = dict(
        db.execute(
            select(Patient.program_id, func.count())
            .where(Patient.program_id.in_(programs))
            .group_by(Patient.program_id)
        ).all()
    )
    open_rows = db.execute(
        select(Episode.program_id, Episode.phase, func.count())
        .where(Episode.program_id.in_(programs), Episode.discharged_at.is_(None))
        .group_by(Episode.program_id, Episode.phase)
    ).all()
    in_care: dict[int, dict[str, int]] = {}
    for program_id, phase, count in open_rows:
        in_care.setdefault(program_id, {})[phase] = count
    discharged = dict(
        db.execute(
            select(Episode.program_id, func.count())
            .where(Episode.program_id.in_(programs), Episode.discharged_at.is_not(None))
            .group_by(Episode.program_id)
        ).all()
    )
    access.audit("read", resource_type=RESOURCE, query="program counts")
    return [
        ProgramCounts(
            program=names.get(p, ""),
            patients=shown_count(patients.get(p, 0)),
            in_care={k: shown_count(v) for k, v in sorted(in_care.get(p, {}).items())},
            discharged=shown_count(discharged.get(p, 0)),
        )
        for p in programs
    ]
