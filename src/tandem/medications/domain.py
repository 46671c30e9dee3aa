"""Medications: monographs, safety screening, dose plans, doses given and taken."""

from datetime import timedelta

from tandem.kit import Domain, Job
from tandem.medications import cli, demo, pages, routes, service, storage

DOMAIN = Domain(
    name="medications",
    routers=(routes.router, pages.router),
    nav=(pages.NAV,),
    chart_tabs=(pages.CHART_TAB,),
    tables=(storage,),
    fhir_resources=routes.FHIR_RESOURCES,
    demo_steps=(("Medication plans", demo.medication_plans),),
    cli=(("med", cli.med_app),),
    jobs=(
        Job(
            "medications.missed_doses",
            timedelta(minutes=15),
            service.sweep_missed_doses_everywhere,
            "raise missed-dose alerts on every active plan",
        ),
    ),
)
