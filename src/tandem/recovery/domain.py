"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from tandem.kit import Domain
from tandem.recovery import care_routes, storage, use_fhir, use_pages

DOMAIN = Domain(
    name="recovery",
    routers=(
        care_routes.router,  # records: CarePlan, Appointment, Encounter, Observation create
        use_pages.router,  # records: the chart's Recovery tab (calendar, care plan, sessions)
    ),
    chart_tabs=(
        use_pages.CHART_TAB,  # records: Recovery
    ),
    tables=(storage,),
    fhir_resources=(
        *care_routes.FHIR_RESOURCES,  # records
    ),
    observation_sources=(
        *use_fhir.SOURCES,  # records: use days, craving ratings, drug-screen results
    ),
)
