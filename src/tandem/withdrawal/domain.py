"""Detox: withdrawal monitoring with validated scales, the census, escalations, PRN doses."""

from datetime import timedelta

from sqlalchemy.orm import Session

from tandem.kit import Domain, Job
from tandem.storage.models import Episode
from tandem.withdrawal import assessments, census, cli, demo, pages, routes, storage


def _episode_changed(db: Session, episode: object) -> None:
    # The patients domain calls episode listeners with the Episode (patients/episodes.py);
    # kit.Domain still types them as (db, patient id), so the listener takes any value and
    # checks it.
    if not isinstance(episode, Episode):
        raise TypeError(f"an episode listener needs an Episode, got {type(episode).__name__}")
    storage.episode_changed(db, episode)


DOMAIN = Domain(
    name="withdrawal",
    routers=(routes.router, pages.router),
    nav=(pages.NAV,),
    chart_tabs=(pages.CHART_TAB,),
    tables=(storage,),
    fhir_resources=routes.FHIR_RESOURCES,
    demo_steps=(("Detox assessments", demo.detox_assessments),),
    cli=(("withdrawal", cli.withdrawal_app),),
    alert_listeners=(assessments.refresh_alerts,),
    episode_listeners=(_episode_changed,),
    jobs=(
        Job(
            "withdrawal.overdue",
            timedelta(minutes=1),
            census.raise_overdue_everywhere,
            "raise overdue-reassessment escalations on every detox unit",
        ),
    ),
)
