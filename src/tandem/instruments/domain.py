"""Scales as data (CIWA-Ar, COWS, SOWS, PHQ-9, GAD-7...) and `tandem score`."""

from tandem.instruments.cli import score_command
from tandem.kit import Domain

DOMAIN = Domain(name="instruments", cli=(("score", score_command),))
