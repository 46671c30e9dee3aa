"""The platform: sign-in, administration, the audit trail (also as FHIR AuditEvent), the FHIR
CapabilityStatement, and the platform's commands and tables."""

from tandem import platform_cli
from tandem.fhir import audit_event
from tandem.fhir import routes as fhir_metadata
from tandem.kit import Domain
from tandem.storage import models
from tandem.web import admin_pages, auth_pages, home

DOMAIN = Domain(
    name="platform",
    routers=(
        home.router,
        auth_pages.router,
        admin_pages.router,
        fhir_metadata.router,
        audit_event.router,
    ),
    tables=(models,),
    fhir_resources=audit_event.FHIR_RESOURCES,
    cli=platform_cli.COMMANDS,
)
