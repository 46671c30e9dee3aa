"""Scales as data (CIWA-Ar, COWS, SOWS, PHQ-9, GAD-7...), `tandem score`, and a page per scale
with its wording and sources."""

from tandem.instruments import pages
from tandem.instruments.cli import score_command
from tandem.kit import Domain

DOMAIN = Domain(name="instruments", routers=(pages.router,), cli=(("score", score_command),))
