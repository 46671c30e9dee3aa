"""Compatibility only: the names `tandem.withdrawal.service` used to hold, for code outside the
withdrawal domain that still imports them (bench/census.py, tests/alerts). New code imports the
module of the clinical noun it needs:

    protocols     a program's protocol versions; band label, short name, citation text
    context       the episode's withdrawal context
    assessments   the one save path, the monitoring row, escalation alerts
    doses         as-needed doses from the protocol's suggestions (stored by medications)
    chart         the withdrawal tab of the chart
    census        the detox census, overdue escalations
    observations  FHIR Observation searches and reads
    checks, prn   the pure input checks
"""

from __future__ import annotations

from tandem.withdrawal.assessments import (
    ALERT_KIND,
    QR,
    SavedAssessment,
    fill_monitoring,
    get_assessment,
    refresh_alerts,
    save_assessment,
)
from tandem.withdrawal.census import (
    OVERDUE_KIND,
    Census,
    CensusRow,
    census,
    census_rows,
    census_statement,
    raise_overdue,
    raise_overdue_everywhere,
)
from tandem.withdrawal.chart import WithdrawalChart, withdrawal_chart
from tandem.withdrawal.checks import HALF_LIFE, SUBSTANCES, ContextInput
from tandem.withdrawal.context import record_context
from tandem.withdrawal.doses import dose_options, record_dose
from tandem.withdrawal.observations import ObservationQuery, get_observation, search_observations
from tandem.withdrawal.prn import DoseInput
from tandem.withdrawal.protocols import (
    ProgramProtocol,
    band_label,
    citation_text,
    program_protocol,
    set_program_protocol,
    short_name,
)

__all__ = [
    "ALERT_KIND",
    "HALF_LIFE",
    "OVERDUE_KIND",
    "QR",
    "SUBSTANCES",
    "Census",
    "CensusRow",
    "ContextInput",
    "DoseInput",
    "ObservationQuery",
    "ProgramProtocol",
    "SavedAssessment",
    "WithdrawalChart",
    "band_label",
    "census",
    "census_rows",
    "census_statement",
    "citation_text",
    "dose_options",
    "fill_monitoring",
    "get_assessment",
    "get_observation",
    "program_protocol",
    "raise_overdue",
    "raise_overdue_everywhere",
    "record_context",
    "record_dose",
    "refresh_alerts",
    "save_assessment",
    "search_observations",
    "set_program_protocol",
    "short_name",
    "withdrawal_chart",
]
