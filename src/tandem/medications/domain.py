"""Medications: monographs, safety screening, dose plans, doses given and taken."""

from datetime import timedelta

from tandem.kit import Domain, Job
from tandem.medications import (
    administration_routes,
    cli,
    demo,
    missed_doses,
    pages,
    routes,
    storage,
    unit_pages,
)

DOMAIN = Domain(
    name="medications",
    routers=(routes.router, administration_routes.router, pages.router, unit_pages.router),
    nav=(pages.NAV, unit_pages.NAV),
    chart_tabs=(pages.CHART_TAB,),
    tables=(storage,),
    fhir_resources=(*routes.FHIR_RESOURCES, *administration_routes.FHIR_RESOURCES),
    demo_steps=(("Medication plans", demo.medication_plans),),
    cli=(("med", cli.med_app),),
    jobs=(
        Job(
            missed_doses.JOB,
            timedelta(minutes=15),
            missed_doses.sweep_missed_doses_everywhere,
            "raise missed-dose alerts on every active plan",
        ),
    ),
)
