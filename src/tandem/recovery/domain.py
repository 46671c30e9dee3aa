"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from datetime import timedelta

from tandem.kit import Domain, Job
from tandem.recovery import (
    care_routes,
    portal_pages,
    portal_storage,
    reminders_cli,
    reminders_service,
    scales_pages,
    scales_routes,
    storage,
    use_fhir,
    use_pages,
)

DOMAIN = Domain(
    name="recovery",
    routers=(
        scales_routes.router,  # self-report scales: QuestionnaireResponse search
        scales_pages.router,  # self-report scales: the Scales tab and its forms
        care_routes.router,  # records: CarePlan, Appointment, Encounter, Observation create
        use_pages.router,  # records: the chart's Recovery tab (calendar, care plan, sessions)
        portal_pages.router,  # portal: Today, check-in, doses, progress, reminder choices
    ),
    nav=(
        portal_pages.NAV,  # portal: Today (patients)
    ),
    chart_tabs=(
        scales_pages.CHART_TAB,  # self-report scales
        use_pages.CHART_TAB,  # records: Recovery
    ),
    tables=(storage, portal_storage),
    fhir_resources=(
        *care_routes.FHIR_RESOURCES,  # records
    ),
    observation_sources=(
        *use_fhir.SOURCES,  # records: use days, craving ratings, drug-screen results
        scales_routes.OBSERVATION_SOURCE,  # self-report scales: their totals
    ),
    cli=(
        ("portal", reminders_cli.portal_app),  # portal: reminder times
    ),
    jobs=(
        Job(
            reminders_service.JOB,
            timedelta(minutes=5),
            reminders_service.send_due,
            "e-mail patients' due check-in, dose and session reminders (when SMTP is set)",
        ),
    ),
)
