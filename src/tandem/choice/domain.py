"""Individual choice: consent for substance-use records (42 CFR Part 2), enforced by the one
policy; the disclosures made under a consent and their accounting."""

from tandem.choice import consent_pages, consent_routes, consent_storage
from tandem.kit import ChartTab, Domain

DOMAIN = Domain(
    name="choice",
    routers=(consent_routes.router, consent_pages.router),
    chart_tabs=(ChartTab("consent", "Consent", "/consents", 80),),
    tables=(consent_storage,),
    fhir_resources=consent_routes.FHIR_RESOURCES,
)
