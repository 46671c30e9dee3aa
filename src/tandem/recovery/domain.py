"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from tandem.kit import Domain
from tandem.recovery import care_routes, scales_pages, scales_routes, storage, use_fhir, use_pages

DOMAIN = Domain(
    name="recovery",
    routers=(
        scales_routes.router,  # self-report scales: QuestionnaireResponse search
        scales_pages.router,  # self-report scales: the Scales tab and its forms
        care_routes.router,  # records: CarePlan, Appointment, Encounter, Observation create
        use_pages.router,  # records: the chart's Recovery tab (calendar, care plan, sessions)
    ),
    chart_tabs=(
        scales_pages.CHART_TAB,  # self-report scales
        use_pages.CHART_TAB,  # records: Recovery
    ),
    tables=(storage,),
    fhir_resources=(
        *care_routes.FHIR_RESOURCES,  # records
    ),
    observation_sources=(
        *use_fhir.SOURCES,  # records: use days, craving ratings, drug-screen results
        scales_routes.OBSERVATION_SOURCE,  # self-report scales: their totals
    ),
)
