"""Alerts to the care team: raised by other domains, acknowledged by a prescriber."""

from tandem.alerts import models, pages
from tandem.kit import Domain

DOMAIN = Domain(name="alerts", routers=(pages.router,), nav=(pages.NAV,), tables=(models,))
