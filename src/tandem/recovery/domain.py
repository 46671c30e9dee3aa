"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from datetime import timedelta

from tandem.kit import Domain, Job
from tandem.recovery import (
    care_routes,
    caseload_cli,
    caseload_pages,
    caseload_storage,
    demo,
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
        caseload_pages.router,  # caseload: risk flags, the patient's timeline
    ),
    nav=(
        portal_pages.NAV,  # portal: Today (patients)
        caseload_pages.NAV,  # caseload (care team)
    ),
    chart_tabs=(
        scales_pages.CHART_TAB,  # self-report scales
        use_pages.CHART_TAB,  # records: Recovery
        caseload_pages.CHART_TAB,  # caseload: Timeline
    ),
    tables=(storage, portal_storage, caseload_storage),
    fhir_resources=(
        *care_routes.FHIR_RESOURCES,  # records
    ),
    observation_sources=(
        *use_fhir.SOURCES,  # records: use days, craving ratings, drug-screen results
        scales_routes.OBSERVATION_SOURCE,  # self-report scales: their totals
    ),
    demo_steps=(("Recovery: care plans, check-ins, screens, sessions", demo.recovery_months),),
    cli=(
        ("portal", reminders_cli.portal_app),  # portal: reminder times
        ("caseload", caseload_cli.caseload_app),  # caseload: the program's risk-flag rules
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
