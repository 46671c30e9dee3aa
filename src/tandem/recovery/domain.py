"""Ongoing therapy: craving, use, mood and attendance over time, the care plan, the patient's
daily check-in and the counselor's caseload."""

from datetime import timedelta

from tandem.kit import Domain, Job
from tandem.recovery import (
    portal_pages,
    portal_storage,
    reminders_cli,
    reminders_service,
    storage,
)

DOMAIN = Domain(
    name="recovery",
    tables=(storage, portal_storage),
    routers=(portal_pages.router,),
    nav=(portal_pages.NAV,),
    cli=(("portal", reminders_cli.portal_app),),
    jobs=(
        Job(
            reminders_service.JOB,
            timedelta(minutes=5),
            reminders_service.send_due,
            "e-mail patients' due check-in, dose and session reminders (when SMTP is set)",
        ),
    ),
)
