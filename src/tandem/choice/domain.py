"""Individual choice: the decision aid (options side by side, the patient's decision), the
patient education library, and consent for substance-use records (42 CFR Part 2), enforced by
the one policy, with the disclosures made under a consent and their accounting."""

from tandem.choice import (
    consent_pages,
    consent_routes,
    consent_storage,
    decision_fhir,
    decision_pages,
    decision_storage,
    education_pages,
)
from tandem.kit import ChartTab, Domain

DOMAIN = Domain(
    name="choice",
    routers=(
        decision_pages.router,  # the decision aid and the patient's decisions
        education_pages.router,  # /learn
        consent_routes.router,  # FHIR Consent, $disclose
        consent_pages.router,  # the Consent tab, releases, the accounting
    ),
    chart_tabs=(
        decision_pages.CHART_TAB,
        ChartTab("consent", "Consent", "/consents", 80),
    ),
    tables=(decision_storage, consent_storage),
    fhir_resources=consent_routes.FHIR_RESOURCES,
    observation_sources=(decision_fhir.SOURCE,),  # the patient's treatment decisions
)
