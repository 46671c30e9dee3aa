"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from tandem.kit import Domain
from tandem.recovery import scales_pages, scales_routes, storage

DOMAIN = Domain(
    name="recovery",
    routers=(
        scales_routes.router,  # self-report scales: QuestionnaireResponse search
        scales_pages.router,  # self-report scales: the Scales tab and its forms
    ),
    chart_tabs=(
        scales_pages.CHART_TAB,  # self-report scales
    ),
    tables=(storage,),
)
