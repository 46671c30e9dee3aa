"""The Observations of withdrawal assessments (a total and each item), as FHIR searches and
reads them: through the one data-access layer, filtered by the policy before they run, audited
with every patient they show."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, and_, or_, select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import row_ref, visible
from tandem.errors import NotFound
from tandem.fhir.observations import Found, ObservationSearch, ObservationSource
from tandem.withdrawal.assessments import OBSERVATION
from tandem.withdrawal.storage import AssessmentRow, ObservationRow


def get_observation(access: Access, observation_id: int) -> tuple[ObservationRow, AssessmentRow]:
    """One Observation by id, through the policy and audited, as `read_row` reads a row. The
    policy's program is its assessment's (an Observation row holds the patient, not the
    program), so the two are read together."""
    found = access.db.execute(
        select(ObservationRow, AssessmentRow)
        .join(AssessmentRow, AssessmentRow.id == ObservationRow.assessment_id)
        .where(ObservationRow.id == observation_id)
    ).first()
    if found is None:
        raise NotFound(f"{OBSERVATION}/{observation_id} is not known")
    obs, assessment = found
    access.require(
        Permission.READ, OBSERVATION, row_ref(assessment), resource_id=str(observation_id)
    )
    access.audit(
        "read", resource_type=OBSERVATION, resource_id=str(obs.id), patient_id=obs.patient_id
    )
    return obs, assessment


# --------------------------------------------------------------------------- /fhir/Observation


def _find(access: Access, query: ObservationSearch, limit: int) -> list[Found]:
    """Scale scores matching a combined Observation search (`tandem.fhir.observations`)."""
    from tandem.instruments.engine import load_instruments
    from tandem.withdrawal import fhir as mapping

    o, a = ObservationRow, AssessmentRow
    stmt: Select[*tuple[Any, ...]] = select(o, a).join(a, a.id == o.assessment_id)
    if query.codes:
        codes = mapping.parse_codes(list(query.codes), set(load_instruments()))
        stmt = stmt.where(
            or_(
                *(
                    and_(o.instrument_id == inst, o.code == code)
                    if code is not None
                    else o.instrument_id == inst
                    for inst, code in codes
                )
            )
        )
    if query.patient_id is not None:
        stmt = stmt.where(a.patient_id == query.patient_id)
    if query.date_ge is not None:
        stmt = stmt.where(o.effective_at >= query.date_ge)
    if query.date_lt is not None:
        stmt = stmt.where(o.effective_at < query.date_lt)
    stmt = (
        stmt.where(visible(access, OBSERVATION, a.patient_id, a.program_id))
        .order_by(o.effective_at.desc(), o.id)
        .limit(limit)
    )
    return [
        Found(
            obs.effective_at,
            obs.id,
            obs.patient_id,
            functools.partial(mapping.observation, obs, assessment),
        )
        for obs, assessment in access.db.execute(stmt)
    ]


def _read(access: Access, observation_id: int) -> dict[str, Any]:
    from tandem.withdrawal import fhir as mapping

    return mapping.observation(*get_observation(access, observation_id))


SOURCE = ObservationSource(prefix="", find=_find, read=_read)
