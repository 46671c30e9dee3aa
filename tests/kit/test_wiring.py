"""One list of domains wires everything; importing a module registers nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tandem import domains
from tandem.storage.registry import full_metadata


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_every_module_registers_no_listener() -> None:
    out = _run(
        """
        import importlib, pkgutil
        from sqlalchemy import event
        from sqlalchemy.orm import Mapper, Session
        import tandem
        for info in pkgutil.walk_packages(tandem.__path__, "tandem."):
            if ".migrations" in info.name:
                continue
            importlib.import_module(info.name)
        from tandem.storage.models import Episode, index_patient_names
        print(event.contains(Session, "before_flush", index_patient_names))
        import tandem.withdrawal.storage as w
        print(hasattr(w, "_episode_admitted"))
        """
    )
    assert out.splitlines() == ["False", "False"]


def test_a_service_imported_alone_still_reaches_every_listener() -> None:
    """Importing a medications service alone used to leave the alert listeners empty."""
    out = _run(
        """
        import tandem.medications.missed_doses
        from tandem.domains import alert_listeners, episode_listeners
        print(sorted(f"{f.__module__}.{f.__name__}" for f in alert_listeners()))
        print(sorted(f"{f.__module__}.{f.__name__}" for f in episode_listeners()))
        """
    )
    alert_line, episode_line = out.splitlines()
    assert "refresh_alerts" in alert_line
    assert "episode_changed" in episode_line


def test_the_domain_list_wires_every_part() -> None:
    names = [d.name for d in domains.domains()]
    # The platform first, then the domains it is built for (later domains append lines).
    assert names[:6] == [
        "platform",
        "patients",
        "alerts",
        "instruments",
        "withdrawal",
        "medications",
    ]
    assert {"recovery", "outcomes", "choice", "counseling"} <= set(names)
    assert len(names) == len(set(names))
    paths = {route.path for router in domains.routers() for route in router.routes}
    for path in ("/fhir/Patient", "/fhir/Observation", "/fhir/MedicationRequest", "/detox"):
        assert path in paths
    tabs = [t.id for t in domains.chart_tabs()]
    assert tabs[:3] == ["overview", "withdrawal", "medications"]
    assert "options" in tabs
    assert "questions" in tabs
    assert "consent" in tabs
    assert {job.name for job in domains.scheduled_jobs()} >= {
        "withdrawal.overdue",
        "medications.missed_doses",
    }
    assert {name for name, _ in domains.cli_commands()} >= {"init", "serve", "score", "med"}
    assert [label for label, _ in domains.demo_steps()] == [
        "Detox assessments",
        "Medication plans",
        "Recovery: care plans, check-ins, screens, sessions",
        "Questions to counselors",
    ]
    tables = set(full_metadata().tables)
    assert {"patients", "withdrawal_assessments", "medication_dose_plans", "alerts"} <= tables
    assert {"consents", "consent_disclosures"} <= tables


def test_every_domain_route_is_one_unit_of_work_and_off_the_event_loop() -> None:
    """Routes never commit by hand and never block the loop: each is a `UnitOfWorkRoute` whose
    endpoint is a plain function (FastAPI runs it in a worker thread)."""
    import inspect

    from tandem.web.deps import UnitOfWorkRoute

    routes = [route for router in domains.routers() for route in router.routes]
    assert len(routes) > 40
    for route in routes:
        assert isinstance(route, UnitOfWorkRoute), route.path
        assert not inspect.iscoroutinefunction(route.endpoint), route.path
