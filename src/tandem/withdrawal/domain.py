"""Detox: withdrawal monitoring with validated scales, the census, escalations, PRN doses."""

from tandem.kit import Domain, Job
from tandem.withdrawal import (
    assessments,
    census,
    cli,
    demo,
    observations,
    pages,
    routes,
    storage,
)

DOMAIN = Domain(
    name="withdrawal",
    routers=(routes.router, pages.router),
    nav=(pages.NAV,),
    chart_tabs=(pages.CHART_TAB,),
    tables=(storage,),
    fhir_resources=routes.FHIR_RESOURCES,
    observation_sources=(observations.SOURCE,),
    demo_steps=(("Detox assessments", demo.detox_assessments),),
    cli=(("withdrawal", cli.withdrawal_app),),
    alert_listeners=(assessments.refresh_alerts,),
    episode_listeners=(storage.episode_changed,),
    jobs=(
        Job(
            census.OVERDUE_JOB,
            census.OVERDUE_EVERY,
            census.raise_overdue_everywhere,
            "raise overdue-reassessment escalations on every detox unit",
        ),
    ),
)
