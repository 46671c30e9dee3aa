"""The platform: sign-in, administration, the audit trail (also as FHIR AuditEvent), the FHIR
CapabilityStatement, and the platform's commands and tables."""

from datetime import timedelta

from tandem import platform_cli
from tandem.access import audit_chain
from tandem.fhir import audit_event, observation_routes
from tandem.fhir import routes as fhir_metadata
from tandem.kit import Domain, Job
from tandem.storage import models
from tandem.web import admin_pages, auth_pages, home, smart_pages

DOMAIN = Domain(
    name="platform",
    routers=(
        home.router,
        auth_pages.router,
        admin_pages.router,
        fhir_metadata.router,
        audit_event.router,
        observation_routes.router,
        smart_pages.router,
    ),
    nav=(smart_pages.NAV,),
    tables=(models,),
    fhir_resources=audit_event.FHIR_RESOURCES,
    cli=platform_cli.COMMANDS,
    jobs=(
        Job(
            "audit.seal",
            timedelta(minutes=1),
            audit_chain.seal_job,
            "seal new audit entries into the hash chain",
        ),
    ),
)
