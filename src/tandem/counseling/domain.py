"""Ask a counselor: a public page (no sign-in) and a patient's own record to ask a question or
for a call back; the counselors' triage queue; crisis signals marked urgent at once, alerting the
care team; FHIR Communication and CommunicationRequest."""

from datetime import timedelta

from tandem.counseling import demo, pages, reply_notices, routes, storage
from tandem.kit import Domain, Job

DOMAIN = Domain(
    name="counseling",
    routers=(routes.router, pages.router),
    nav=(pages.NAV,),
    chart_tabs=(pages.CHART_TAB,),
    tables=(storage,),
    fhir_resources=routes.FHIR_RESOURCES,
    demo_steps=(("Questions to counselors", demo.asked_questions),),
    jobs=(
        Job(
            reply_notices.JOB,
            timedelta(minutes=5),
            reply_notices.send_due,
            "e-mail patients that a counselor replied to their question (when SMTP is set)",
        ),
    ),
)
