"""Outcomes: de-identified, program-level counts for research."""

from tandem.kit import Domain
from tandem.outcomes import pages

DOMAIN = Domain(name="outcomes", routers=(pages.router,), nav=(pages.NAV,))
