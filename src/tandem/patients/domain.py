"""Patients, their episodes of care, and the chart every other domain adds tabs to."""

from tandem.kit import ChartTab, Domain
from tandem.patients import pages, routes

DOMAIN = Domain(
    name="patients",
    routers=(routes.router, pages.router),
    chart_tabs=(ChartTab("overview", "Overview", "", 0),),
    fhir_resources=routes.FHIR_RESOURCES,
)
