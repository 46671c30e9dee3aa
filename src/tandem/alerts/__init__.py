"""Alerts for the care team: escalations and risk signals that a person must acknowledge."""
