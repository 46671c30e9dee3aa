"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from tandem.kit import Domain
from tandem.recovery import caseload_cli, caseload_pages, caseload_storage, demo, storage

DOMAIN = Domain(
    name="recovery",
    routers=(caseload_pages.router,),
    nav=(caseload_pages.NAV,),
    chart_tabs=(caseload_pages.CHART_TAB,),
    tables=(
        storage,
        caseload_storage,
    ),
    demo_steps=(("Recovery: care plans, check-ins, screens, sessions", demo.recovery_months),),
    cli=(("caseload", caseload_cli.caseload_app),),
)
