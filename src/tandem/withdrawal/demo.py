"""`tandem demo` step: a detox shift in progress.

For every patient in an open detox episode of the demo program: a withdrawal context, a CIWA-Ar
(alcohol) or COWS (opioid) trajectory scored by the instrument engine and read against the
program's protocol by the monitoring core (so totals, bands, due times and escalations are the
real ones), as-needed doses taken only from the protocol's suggestions, a few patients overdue,
open alerts for the recent escalations (older ones acknowledged by the prescriber). Synthetic
shapes, not clinical data. Deterministic for `world.rng`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tandem.alerts.models import Alert
from tandem.clock import program_today
from tandem.demo import DemoWorld
from tandem.instruments.engine import get_instrument, score
from tandem.instruments.models import Instrument
from tandem.medications.administrations import load_administrations
from tandem.storage.models import Episode, Patient
from tandem.withdrawal.assessments import ALERT_KIND, QR, fill_monitoring, refresh_alerts
from tandem.withdrawal.census import OVERDUE_KIND
from tandem.withdrawal.monitoring import ScoredAssessment, evaluate, reassessment_interval
from tandem.withdrawal.prn import dose_range
from tandem.withdrawal.protocol import (
    BandRule,
    OverdueRule,
    Protocol,
    RiseRule,
    TotalAtLeastRule,
    protocol_from_mapping,
)
from tandem.withdrawal.protocols import band_label, citation_text, set_program_protocol, short_name
from tandem.withdrawal.storage import (
    BASELINE,
    AssessmentRow,
    MonitoringRow,
    ObservationRow,
    WithdrawalContextRow,
)

DEMO_NOTE = (
    "Synthetic demo program's own setting, chosen for the demo only; not from a source. "
    "A real program must set and confirm its own."
)


def demo_protocol() -> Protocol:
    """The example protocol with the gaps a program must fill filled in, as the synthetic program's
    own (unverified) choices: a COWS and SOWS interval, a grace period before overdue escalates."""
    text = (
        resources.files("tandem.withdrawal")
        .joinpath("data", "example_protocol.yaml")
        .read_text("utf-8")
    )
    data: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    data["version"] = f"{data['version']}-riverside-demo"
    data["title"] = "Riverside (synthetic) detox protocol, from Tandem's example"
    data["sources"]["demo_program"] = {
        "citation": "Riverside Recovery (synthetic) program setting",
        "quality": "none",
        "unverified": True,
        "note": DEMO_NOTE,
    }
    unset = {"ref": "demo_program", "unverified": True, "note": DEMO_NOTE}
    for key in ("cows", "sows_gossop"):
        for row in data["instruments"][key]["reassessment"]:
            if row["minutes"] is None:
                row["minutes"] = 120
                row["source"] = unset
    for inst in data["instruments"].values():
        for rule in inst["escalations"]:
            if rule["kind"] == "overdue" and rule["minutes"] is None:
                rule["minutes"] = 30
                rule["source"] = unset
    return protocol_from_mapping(data, "demo protocol")


@dataclass(frozen=True)
class _Done:
    """What the monitoring row keeps of a demo assessment (`assessments.Assessed`)."""

    id: int
    instrument_id: str
    total: int
    assessed_at: datetime


@dataclass
class _Plan:
    episode: Episode
    patient: Patient
    instrument: Instrument
    context: WithdrawalContextRow
    rows: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


def _answers(instrument: Instrument, target: float, rng: random.Random) -> dict[str, int]:
    """Item answers (allowed values only) whose total lands near `target`."""
    share = max(0.0, target) / instrument.total.max
    answers = {}
    for item in instrument.items:
        want = share * item.max_value * rng.uniform(0.3, 1.5)
        answers[item.id] = min(item.allowed_values, key=lambda v: (abs(v - want), v))
    return answers


def _severity(hours_since_use: float, peak_at: float, peak: float, width: float) -> float:
    return 2.5 + peak * math.exp(-(((hours_since_use - peak_at) / width) ** 2))


def _context(
    rng: random.Random,
    episode: Episode,
    patient: Patient,
    substance: str,
    now: datetime,
    nurse_id: int | None,
) -> WithdrawalContextRow:
    last_use = episode.admitted_at - timedelta(hours=rng.uniform(3, 30))
    today = program_today(patient.program.time_zone, now)
    age = (today - patient.birth_date).days // 365 if patient.birth_date else None
    roll = rng.random()
    return WithdrawalContextRow(
        episode_id=episode.id,
        patient_id=patient.id,
        program_id=patient.program_id,
        substance=substance,
        last_use_at=last_use if rng.random() < 0.9 else None,
        opioid_half_life_class=(
            rng.choice(["short", "short", "long"]) if substance == "opioid" else None
        ),
        history_withdrawal_seizures=(True if roll < 0.07 else False if roll < 0.85 else None),
        history_delirium_tremens=(
            True if rng.random() < 0.05 else False if rng.random() < 0.8 else None
        ),
        liver_failure=True if substance == "alcohol" and rng.random() < 0.04 else None,
        elderly=True if age is not None and age >= 65 else None,
        note="",
        recorded_at=episode.admitted_at + timedelta(minutes=rng.randint(5, 40)),
        recorded_by=nurse_id,
    )


def detox_assessments(db: Session, world: DemoWorld) -> None:
    rng, now = world.rng, world.now
    nurse = world.users.get("nurse")
    prescriber = world.users.get("prescriber")
    nurse_id = nurse.id if nurse else None
    protocol = demo_protocol()
    version_id = set_program_protocol(db, world.program.id, protocol, origin="program").version_id
    assert version_id is not None
    detox = world.units["detox"]
    episodes = db.execute(
        select(Episode, Patient)
        .join(Patient, Patient.id == Episode.patient_id)
        .where(
            Episode.unit_id == detox.id, Episode.discharged_at.is_(None), Episode.phase == "detox"
        )
        .order_by(Episode.id)
    ).all()
    instruments = {"alcohol": get_instrument("ciwa_ar"), "opioid": get_instrument("cows")}
    plans: list[_Plan] = []
    for episode, patient in episodes:
        substance = "alcohol" if rng.random() < 0.62 else "opioid"
        context = _context(rng, episode, patient, substance, now, nurse_id)
        db.add(context)
        plan = _Plan(episode, patient, instruments[substance], context)
        plans.append(plan)
        _trajectory(plan, protocol, rng, now, nurse_id, version_id)
    db.flush()
    rows = [row for plan in plans for row in plan.rows]
    if rows:  # bulk: one executemany, ids back in the order given
        ids = list(
            db.scalars(
                insert(AssessmentRow).returning(AssessmentRow.id, sort_by_parameter_order=True),
                rows,
            )
        )
        at = 0
        for plan in plans:
            plan.ids = ids[at : at + len(plan.rows)]
            at += len(plan.rows)
    observations: list[dict[str, Any]] = []
    doses: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    # Admission made each episode's baseline monitoring row; the first assessment turns it into
    # the instrument's row.
    baselines = {
        m.episode_id: m
        for m in db.scalars(
            select(MonitoringRow).where(
                MonitoringRow.unit_id == detox.id, MonitoringRow.instrument_id == BASELINE
            )
        )
    }
    for plan in plans:
        if not plan.rows:
            continue
        for aid, a in zip(plan.ids, plan.rows, strict=True):
            observations += [
                {
                    "assessment_id": aid,
                    "patient_id": a["patient_id"],
                    "instrument_id": a["instrument_id"],
                    "code": code,
                    "value": value,
                    "effective_at": a["assessed_at"],
                }
                for code, value in (("total", a["total"]), *a["item_values"].items())
            ]
        doses += _doses(plan, protocol, rng, nurse_id)
        alerts += _escalations(
            db,
            plan,
            protocol,
            now,
            prescriber.id if prescriber else None,
            baselines.get(plan.episode.id),
        )
    for table, values in ((ObservationRow, observations), (Alert, alerts)):
        if values:
            db.execute(insert(table), values)
    load_administrations(db, doses)  # the medications domain's table
    db.flush()
    refresh_alerts(db)  # the census's open-alert summary, for every patient at once


def _trajectory(
    plan: _Plan,
    protocol: Protocol,
    rng: random.Random,
    now: datetime,
    nurse_id: int | None,
    version_id: int,
) -> None:
    """Assessments from admission until now, each reassessment near the time the protocol set."""
    episode, inst = plan.episode, plan.instrument
    if rng.random() < 0.05:
        return  # just admitted, baseline not done yet: "Baseline due" on the census
    last_use = plan.context.last_use_at or episode.admitted_at - timedelta(hours=12)
    peak_at = rng.uniform(20, 50)
    low, high, top = (3, 14, 22) if inst.id == "ciwa_ar" else (5, 20, 30)
    peak = rng.uniform(low, high) if rng.random() < 0.85 else rng.uniform(high, top)
    width = rng.uniform(14, 30)
    # Some patients were not reassessed on time: their last assessment stops short of now.
    cut_off = now - timedelta(minutes=rng.randint(150, 330)) if rng.random() < 0.12 else now
    at = episode.admitted_at + timedelta(minutes=rng.randint(10, 45))
    scheme = protocol.instrument(inst.id).band_scheme
    history: list[ScoredAssessment] = []
    while at <= cut_off and len(history) < 200:
        hours = (at - last_use).total_seconds() / 3600
        target = _severity(hours, peak_at, peak, width) + rng.uniform(-1.5, 1.5)
        result = score(inst, _answers(inst, target, rng), scheme.id if scheme else None)
        band_id = result.band.id if result.band else None
        history.append(
            ScoredAssessment(
                inst.id,
                result.total,
                band_id,
                at,
                result.scheme_id,
                protocol.version,
                f"demo-{len(history)}",
            )
        )
        interval = reassessment_interval(protocol, inst.id, history, at).minutes or 120
        plan.rows.append(
            {
                "patient_id": plan.patient.id,
                "program_id": plan.patient.program_id,
                "episode_id": episode.id,
                "instrument_id": inst.id,
                "instrument_version": inst.version,
                "total": result.total,
                "band_scheme_id": result.scheme_id,
                "band_id": band_id,
                "band_label": band_label(protocol, inst.id, result.total, result.band),
                "item_values": dict(result.item_values),
                "flags": [f.id for f in result.flags],
                "protocol_version_id": version_id,
                "protocol_version": protocol.version,
                "assessed_at": at,
                "recorded_at": at + timedelta(minutes=rng.randint(1, 6)),
                "recorded_by": nurse_id,
                "channel": "demo",
                "interval_minutes": interval,
                "due_at": at + timedelta(minutes=interval),
            }
        )
        at = at + timedelta(minutes=interval + rng.choice([-10, -5, 0, 0, 5, 10, 15, 25]))


def _doses(
    plan: _Plan, protocol: Protocol, rng: random.Random, nurse_id: int | None
) -> list[dict[str, Any]]:
    """As-needed doses from the protocol's suggestion for the score, within its range."""
    if nurse_id is None:
        return []
    inst_protocol = protocol.instrument(plan.instrument.id)
    prefer = rng.randint(0, 1)
    doses = []
    for i, (aid, a) in enumerate(zip(plan.ids, plan.rows, strict=True)):
        row = inst_protocol.row_for(a["total"])
        if row is None or not row.medication or rng.random() > 0.75:
            continue
        option = row.medication[min(prefer, len(row.medication) - 1)]
        allowed = dose_range(option.dose_text)
        if allowed is None:
            continue
        value = allowed.low if rng.random() < 0.6 else allowed.high
        assessed = a["assessed_at"]
        nxt = (
            plan.rows[i + 1]["assessed_at"]
            if i + 1 < len(plan.rows)
            else assessed + timedelta(minutes=30)
        )
        given = assessed + min(timedelta(minutes=rng.randint(4, 20)), (nxt - assessed) / 2)
        doses.append(
            {
                "patient_id": a["patient_id"],
                "program_id": a["program_id"],
                "medication_id": option.drug,
                "medication_text": f"{option.drug} {Decimal(value).normalize():f} {allowed.unit}",
                "dose_value": value,
                "dose_unit": allowed.unit,
                "route": option.route or "oral",
                "status": "completed",
                "status_reason": "",
                "indication": f"{short_name(plan.instrument)} {a['total']}"
                + (f" ({a['band_label']})" if a["band_label"] else ""),
                "administered_at": given,
                "performer_id": nurse_id,
                "assessment_id": aid,
                "note": f"Protocol suggestion: {option.drug} {option.dose_text}; {protocol.cite(option.source).citation}",
                "recorded_at": given + timedelta(minutes=2),
                "dose_plan_id": None,
            }
        )
    return doses


def _escalations(
    db: Session,
    plan: _Plan,
    protocol: Protocol,
    now: datetime,
    prescriber_id: int | None,
    monitoring: MonitoringRow | None,
) -> list[dict[str, Any]]:
    """Alerts for the escalations each assessment fired, acknowledged by the prescriber when more
    than two hours old so the recent ones are open; and the monitoring row of the final state."""
    inst = plan.instrument
    series = [
        ScoredAssessment(
            inst.id,
            a["total"],
            a["band_id"],
            a["assessed_at"],
            a["band_scheme_id"],
            a["protocol_version"],
            str(aid),
        )
        for aid, a in zip(plan.ids, plan.rows, strict=True)
    ]
    rules = {r.id: r for r in protocol.instrument(inst.id).escalations}
    alerts: list[dict[str, Any]] = []
    state = None
    for i, (aid, a) in enumerate(zip(plan.ids, plan.rows, strict=True)):
        last = i == len(plan.rows) - 1
        fired = _fired(protocol, inst.id, series, i, a["total"])
        if last:
            state = evaluate(protocol, inst.id, series, now)
            fired = list(state.escalations)
        for esc in fired:
            overdue = isinstance(rules.get(esc.rule_id), OverdueRule)
            raised = now if overdue else a["recorded_at"]
            old = raised < now - timedelta(hours=2) and prescriber_id is not None
            alerts.append(
                {
                    "patient_id": a["patient_id"],
                    "program_id": a["program_id"],
                    "kind": OVERDUE_KIND if overdue else ALERT_KIND,
                    "rule_id": esc.rule_id,
                    "severity": esc.severity,
                    "for_role": "prescriber",
                    "title": esc.message,
                    "detail": esc.detail,
                    "source": citation_text(protocol, esc.source),
                    "related_type": QR,
                    "related_id": str(aid),
                    "raised_at": raised,
                    "acknowledged_at": raised + timedelta(minutes=12) if old else None,
                    "acknowledged_by": prescriber_id if old else None,
                    "acknowledgement_note": "Reviewed at the bedside; plan unchanged (synthetic)."
                    if old
                    else "",
                }
            )
    assert state is not None
    done = [
        _Done(aid, a["instrument_id"], a["total"], a["assessed_at"])
        for aid, a in zip(plan.ids, plan.rows, strict=True)
    ]
    if monitoring is None:
        monitoring = MonitoringRow(
            episode_id=plan.episode.id,
            patient_id=plan.patient.id,
            program_id=plan.patient.program_id,
            unit_id=plan.episode.unit_id,
            active=True,
            admitted_at=plan.episode.phase_started_at,
            alert_rank=-1,
            alert_count=0,
        )
        db.add(monitoring)
    monitoring.instrument_id = inst.id
    fill_monitoring(monitoring, protocol, plan.rows[-1]["protocol_version_id"], done, state, now)
    monitoring.overdue_alerted = any(
        isinstance(rules.get(e.rule_id), OverdueRule) for e in state.escalations
    )
    return alerts


def _fired(
    protocol: Protocol, instrument_id: str, series: list[ScoredAssessment], i: int, total: int
) -> list[Any]:
    """Escalations when an earlier assessment was saved (cheap: only scores that can fire)."""
    inst = protocol.instrument(instrument_id)
    previous = series[i - 1].total if i else None
    if not any(_may_fire(rule, total, previous, inst) for rule in inst.escalations):
        return []
    return list(evaluate(protocol, instrument_id, series[: i + 1], series[i].scored_at).escalations)


def _may_fire(rule: Any, total: int, previous: int | None, inst: Any) -> bool:
    if isinstance(rule, BandRule):
        band = inst.band_scheme.band_for(total) if inst.band_scheme else None
        return band is not None and band.id in rule.bands
    if isinstance(rule, TotalAtLeastRule):
        return rule.total is not None and total >= rule.total
    if isinstance(rule, RiseRule):
        return rule.points is not None and previous is not None and total - previous >= rule.points
    return False
