"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from tandem.kit import Domain
from tandem.recovery import storage

DOMAIN = Domain(name="recovery", tables=(storage,))
