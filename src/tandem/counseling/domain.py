"""Ask a counselor: a public page (no sign-in) and a patient's own record to ask a question or
for a call back; the counselors' triage queue; crisis signals marked urgent at once, alerting the
care team; FHIR Communication and CommunicationRequest."""

from tandem.counseling import demo, pages, routes, storage
from tandem.kit import Domain

DOMAIN = Domain(
    name="counseling",
    routers=(routes.router, pages.router),
    nav=(pages.NAV,),
    chart_tabs=(pages.CHART_TAB,),
    tables=(storage,),
    fhir_resources=routes.FHIR_RESOURCES,
    demo_steps=(("Questions to counselors", demo.asked_questions),),
)
