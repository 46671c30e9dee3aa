"""`tandem med`: look up monographs, screen a patient, print titration and taper calendars.

A thin adapter: parse options, call one core function, print. Any input the core refuses
is reported on stderr naming the option to fix, with exit status 2.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tandem.medications.dose import Dose, parse_days, parse_dose, parse_mg
from tandem.medications.dose_plan import DosePlan, renal_titration, taper, titration
from tandem.medications.errors import MedicationInputError, PlanRefused
from tandem.medications.monograph import (
    Monograph,
    Source,
    all_monographs,
    load_monograph,
)
from tandem.medications.plausibility import (
    check_measurement,
    creatinine_to_mg_dl,
    weight_to_kg,
)
from tandem.medications.renal import RenalResult, assess
from tandem.medications.safety import PatientFacts, ScreeningResult, screen
from tandem.medications.validation import weight_basis_of

__all__ = ["med_app"]

med_app = typer.Typer(
    name="med",
    help="Medication monographs, safety screening and dose plans.",
    no_args_is_help=True,
    add_completion=False,
)

_OPTION = {
    "medication_id": "MEDICATION",
    "taking": "--on",
    "from_dose": "--from",
    "over_days": "--over",
    "step_mg": "--step",
    "every_days": "--every",
    "hold_days": "--hold",
    "unit_mg": "--unit",
    "renal": "--creatinine-mg-dl",
    "on_dialysis": "--dialysis",
    "alt_u_l": "--alt",
    "ast_u_l": "--ast",
    "hours_since_last_drink": "--hours-since-drink",
    "creatinine_umol_l": "--creatinine-umol-l",
    "weight_lb": "--weight-lb",
}
_STYLE = {
    "contraindicated": "bold white on red",
    "major_caution": "bold red",
    "caution": "yellow",
    "info": "cyan",
}


def _option(field: str) -> str:
    return _OPTION.get(field, "--" + field.replace("_", "-"))


def _fail(option: str, message: str) -> NoReturn:
    typer.echo(f"Error: {option}: {message}", err=True)
    raise typer.Exit(code=2)


def _refuse(exc: MedicationInputError) -> NoReturn:
    message = exc.message
    if isinstance(exc, PlanRefused) and exc.sources:
        message += "\n  Source: " + "; ".join(_cite(s) for s in exc.sources)
    _fail(_option(exc.field), message)


def _cite(s: Source) -> str:
    return s.citation + (f" <{s.url}>" if s.url else "")


def _out() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _today() -> date:
    # The adapter may read the clock; the core never does.
    return datetime.now(tz=UTC).astimezone().date()


def _monograph(medication: str) -> Monograph:
    try:
        return load_monograph(medication)
    except MedicationInputError as exc:
        _refuse(exc)


def _date(value: str | None, option: str) -> date:
    if value is None:
        return _today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(option, f"cannot read date {value!r}; write it as YYYY-MM-DD")


def _taking(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["none"]:
        return frozenset()
    if not names:
        _fail("--on", "give a comma-separated list of classes, or 'none'")
    return frozenset(names)


def _renal(
    age: float | None,
    sex: str | None,
    weight_kg: float | None,
    creatinine_mg_dl: float | None,
    creatinine_umol_l: float | None,
    dialysis: bool | None,
) -> RenalResult | None:
    scr = _creatinine(creatinine_mg_dl, creatinine_umol_l)
    age = _plausible("age", age)
    if all(v is None for v in (age, sex, weight_kg, scr, dialysis)):
        return None
    try:
        facts = PatientFacts(
            age=age, sex=_sex(sex), weight_kg=weight_kg, creatinine_mg_dl=scr, on_dialysis=dialysis
        )
        return assess(
            age=facts.age,
            sex=facts.sex,
            weight_kg=facts.weight_kg,
            creatinine_mg_dl=facts.creatinine_mg_dl,
            on_dialysis=facts.on_dialysis,
        )
    except MedicationInputError as exc:
        _refuse(exc)


def _creatinine(mg_dl: float | None, umol_l: float | None) -> float | None:
    """Serum creatinine in mg/dL, from whichever unit was given, within its plausible range."""
    if mg_dl is not None and umol_l is not None:
        _fail("--creatinine-umol-l", "give creatinine once, in mg/dL or in µmol/L")
    try:
        if umol_l is not None:
            return creatinine_to_mg_dl("creatinine_umol_l", umol_l, "umol_l")
        return None if mg_dl is None else creatinine_to_mg_dl("creatinine_mg_dl", mg_dl, "mg_dl")
    except MedicationInputError as exc:
        _refuse(exc)


def _weight(kg: float | None, lb: float | None) -> float | None:
    """Body weight in kg, from kg or lb, within its plausible range."""
    if kg is not None and lb is not None:
        _fail("--weight-lb", "give the weight once, in kg or in lb")
    try:
        if lb is not None:
            return weight_to_kg("weight_lb", lb, "lb")
        return None if kg is None else weight_to_kg("weight_kg", kg, "kg")
    except MedicationInputError as exc:
        _refuse(exc)


def _plausible(field: str, value: float | None) -> float | None:
    try:
        return None if value is None else check_measurement(field, value)
    except MedicationInputError as exc:
        _refuse(exc)


def _sex(value: str | None) -> Any:
    if value is None:
        return None
    v = value.strip().lower()
    v = {"f": "female", "m": "male", "woman": "female", "man": "male"}.get(v, v)
    if v not in ("female", "male"):
        _fail("--sex", f"must be female or male, got {value!r}")
    return v


# --------------------------------------------------------------------------- list / show


@med_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the medications Tandem holds monographs for."""
    monos = all_monographs()
    if as_json:
        _emit_json(
            [
                {
                    "id": m.id,
                    "name": m.name,
                    "brand_names": m.brand_list,
                    "rxnorm": m.ingredient_code.code,
                    "rxnorm_unverified": m.ingredient_code.unverified,
                    "max_mg_day": m.dosing.max_mg_day.value,
                    "rules": [r.id for r in m.rules],
                }
                for m in monos
            ]
        )
        return
    table = Table(title="Medications")
    for col in ("id", "name", "brands", "RxNorm", "max mg/day", "rules"):
        table.add_column(col)
    for m in monos:
        code = m.ingredient_code
        table.add_row(
            m.id,
            m.name,
            ", ".join(m.brand_list) or "-",
            (code.code or "none") + (" (unverified)" if code.unverified else ""),
            "-"
            if m.dosing.max_mg_day.value is None
            else f"{m.dosing.max_mg_day.value:g}"
            + (" (unverified)" if m.dosing.max_mg_day.unverified else ""),
            str(len(m.rules)),
        )
    _out().print(table)


@med_app.command("show")
def show_command(
    medication: Annotated[str, typer.Argument(metavar="MEDICATION")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one monograph with its sources and what is unverified."""
    mono = _monograph(medication)
    if as_json:
        _emit_json(mono.model_dump(mode="json", exclude_none=True))
        return
    con = _out()
    used: dict[str, Source] = {}

    def refs(item: Any) -> str:
        for s in item.source:
            used[s.id] = s
        mark = " [bold magenta]UNVERIFIED[/]" if item.unverified else ""
        return f" [dim]\\[{', '.join(s.id for s in item.source)}][/]{mark}"

    def section(title: str, facts: Any) -> None:
        if facts:
            con.print(f"\n[bold]{title}[/]")
            for f in facts:
                con.print(f"  • {escape(f.text)}{refs(f)}")

    con.print(f"[bold underline]{escape(mono.name)}[/] ({mono.id})")
    for c in mono.rxnorm:
        con.print(f"  RxNorm {c.code or 'none'} {escape(c.display)}{refs(c)}")
    if mono.brand_names:
        con.print("\n[bold]Brand names[/]")
        for b in mono.brand_names:
            detail = ", ".join(x for x in (b.country, b.form, b.marketer) if x)
            con.print(f"  • {escape(b.name)}{f' ({escape(detail)})' if detail else ''}{refs(b)}")
    if mono.mechanism:
        section("Mechanism", [mono.mechanism])
    section("Labelled indications", mono.indications)
    section("Uses", mono.uses)
    for use in mono.off_label_uses:
        con.print(f"\n[bold]Off-label: {escape(use.condition)}[/]")
        if use.summary:
            con.print(f"  {escape(use.summary.text)}{refs(use.summary)}")
        for st in use.studies:
            n = f", n={st.n}" if st.n else ""
            ids = "".join(f", {k} {v}" for k, v in (("doi", st.doi), ("PMID", st.pmid)) if v)
            con.print(f"  • [italic]{escape(st.label)}[/] ({escape(st.design)}{n}{escape(ids)})")
            con.print(f"      {escape(st.result)}{refs(st)}")
    d = mono.dosing
    con.print("\n[bold]Dosing[/]" + (f" ({d.route})" if d.route else ""))
    for f in d.regimen:
        con.print(f"  • {escape(f.text)}{refs(f)}")
    mx = d.max_mg_day
    con.print(
        f"  • Maximum: {'not given' if mx.value is None else f'{mx.value:g} {mx.unit}'}{refs(mx)}"
    )
    if d.taper:
        con.print(f"  • Taper: {escape(d.taper.text)}{refs(d.taper)}")
    section("Elimination", mono.elimination)
    section("Half-life", mono.half_life)
    section("Kidney function", mono.renal)
    if mono.discontinuation:
        section("Stopping", [mono.discontinuation])
    section("Overdose", mono.overdose)
    section("Interactions", mono.interactions)
    section("Pregnancy", mono.pregnancy)
    section("Adverse effects", mono.adverse_effects)
    section("Warnings", mono.warnings)
    section("Regulatory", mono.regulatory)
    if mono.rules:
        table = Table(title="Safety rules")
        for col in ("rule", "severity", "when"):
            table.add_column(col)
        for r in mono.rules:
            refs(r)
            table.add_row(r.id, f"[{_STYLE[r.severity]}]{r.severity}[/]", escape(r.when.describe()))
        con.print(table)
    unverified = mono.unverified_items()
    if unverified:
        con.print("\n[bold magenta]Unverified[/]")
        for path, note in unverified:
            con.print(f"  • {escape(path)}: {escape(note)}")
    con.print("\n[bold]Sources[/]")
    for s in used.values():
        con.print(f"  \\[{s.id}] {escape(_cite(s))} [dim]({s.quality})[/]")


# --------------------------------------------------------------------------- check


@med_app.command("check")
def check_command(
    medication: Annotated[str, typer.Argument(metavar="MEDICATION")],
    age: Annotated[float | None, typer.Option(help="Age in years.")] = None,
    sex: Annotated[
        str | None, typer.Option(help="female or male (as the kidney equations use it).")
    ] = None,
    weight_kg: Annotated[float | None, typer.Option(help="Actual body weight, kg.")] = None,
    weight_lb: Annotated[float | None, typer.Option(help="Actual body weight, lb.")] = None,
    creatinine_mg_dl: Annotated[float | None, typer.Option(help="Serum creatinine, mg/dL.")] = None,
    creatinine_umol_l: Annotated[
        float | None, typer.Option(help="Serum creatinine, µmol/L.")
    ] = None,
    weight_basis: Annotated[
        str, typer.Option(help="Cockcroft-Gault weight: actual, ideal or adjusted.")
    ] = "actual",
    ideal_weight_kg: Annotated[
        float | None, typer.Option(help="Ideal body weight, kg (for ideal/adjusted).")
    ] = None,
    on: Annotated[
        str | None,
        typer.Option(
            "--on", help="Current medication/substance classes, comma-separated (or 'none')."
        ),
    ] = None,
    pregnant: Annotated[bool | None, typer.Option("--pregnant/--not-pregnant")] = None,
    breastfeeding: Annotated[
        bool | None, typer.Option("--breastfeeding/--not-breastfeeding")
    ] = None,
    seizure_history: Annotated[
        bool | None, typer.Option("--seizure-history/--no-seizure-history")
    ] = None,
    psychosis_history: Annotated[
        bool | None, typer.Option("--psychosis-history/--no-psychosis-history")
    ] = None,
    stroke_history: Annotated[
        bool | None, typer.Option("--stroke-history/--no-stroke-history")
    ] = None,
    respiratory_disease: Annotated[
        bool | None, typer.Option("--respiratory-disease/--no-respiratory-disease")
    ] = None,
    dialysis: Annotated[bool | None, typer.Option("--dialysis/--no-dialysis")] = None,
    alt: Annotated[float | None, typer.Option("--alt", help="ALT, U/L.")] = None,
    ast: Annotated[float | None, typer.Option("--ast", help="AST, U/L.")] = None,
    acute_hepatitis: Annotated[
        bool | None, typer.Option("--acute-hepatitis/--no-acute-hepatitis")
    ] = None,
    liver_failure: Annotated[
        bool | None, typer.Option("--liver-failure/--no-liver-failure")
    ] = None,
    hepatic_impairment: Annotated[
        str | None,
        typer.Option(
            help="Hepatic impairment: none, or mild/moderate/severe (Child-Pugh 5-6, 7-9, >9)."
        ),
    ] = None,
    severe_heart_disease: Annotated[
        bool | None,
        typer.Option(
            "--severe-heart-disease/--no-severe-heart-disease",
            help="Severe myocardial disease or coronary occlusion.",
        ),
    ] = None,
    qtc_ms: Annotated[float | None, typer.Option(help="QTc, ms.")] = None,
    qtc_prolonged: Annotated[
        bool | None,
        typer.Option(
            "--qtc-prolonged/--qtc-not-prolonged", help="The clinician's reading of the QTc."
        ),
    ] = None,
    opioid_free_days: Annotated[
        float | None, typer.Option(help="Days since last opioid use.")
    ] = None,
    opioid_withdrawal_signs: Annotated[
        bool | None, typer.Option("--opioid-withdrawal-signs/--no-opioid-withdrawal-signs")
    ] = None,
    opioid_positive_test: Annotated[
        bool | None, typer.Option("--opioid-positive-test/--opioid-negative-test")
    ] = None,
    intoxicated: Annotated[bool | None, typer.Option("--intoxicated/--not-intoxicated")] = None,
    hours_since_drink: Annotated[
        float | None, typer.Option("--hours-since-drink", help="Hours since the last drink.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Screen a patient for one medication: kidney function and every safety rule that applies.

    Anything not given is treated as not recorded (never as "no"), and the screen says what to
    record.
    """
    mono = _monograph(medication)
    if weight_basis not in ("actual", "ideal", "adjusted"):
        _fail("--weight-basis", f"must be actual, ideal or adjusted, got {weight_basis!r}")
    try:
        facts = PatientFacts(
            age=_plausible("age", age),
            sex=_sex(sex),
            weight_kg=_weight(weight_kg, weight_lb),
            creatinine_mg_dl=_creatinine(creatinine_mg_dl, creatinine_umol_l),
            weight_basis=weight_basis_of(weight_basis),
            ideal_weight_kg=_plausible("ideal_weight_kg", ideal_weight_kg),
            on_dialysis=dialysis,
            pregnant=pregnant,
            breastfeeding=breastfeeding,
            seizure_history=seizure_history,
            psychosis_history=psychosis_history,
            stroke_history=stroke_history,
            respiratory_disease=respiratory_disease,
            alt_u_l=alt,
            ast_u_l=ast,
            acute_hepatitis=acute_hepatitis,
            liver_failure=liver_failure,
            severe_heart_disease=severe_heart_disease,
            hepatic_impairment=hepatic_impairment,
            qtc_ms=qtc_ms,
            qtc_prolonged=qtc_prolonged,
            taking=_taking(on),
            opioid_free_days=opioid_free_days,
            opioid_withdrawal_signs=opioid_withdrawal_signs,
            opioid_positive_test=opioid_positive_test,
            intoxicated=intoxicated,
            hours_since_last_drink=hours_since_drink,
        )
        result = screen(mono.id, facts)
    except MedicationInputError as exc:
        _refuse(exc)
    if as_json:
        _emit_json(result.to_dict())
        return
    _print_screen(result)


def _print_screen(result: ScreeningResult) -> None:
    con = _out()
    con.print(f"[bold]{escape(result.medication_name)}[/] safety screen")
    if result.crcl is not None:
        c = result.crcl
        con.print(
            f"  CrCl (Cockcroft-Gault, {c.weight_basis} weight {c.weight_used_kg:g} kg): "
            f"{c.ml_min:g} mL/min"
        )
    else:
        con.print("  CrCl: not computed")
    if result.egfr is not None:
        con.print(
            f"  eGFR (CKD-EPI 2021): {result.egfr.ml_min_1_73m2:g} mL/min/1.73 m² "
            f"({result.egfr.category})"
        )
    else:
        con.print("  eGFR: not computed")
    if not result.findings:
        con.print("  No findings.")
    for f in result.findings:
        label = f.severity.replace("_", " ").upper()
        con.print(f"\n[{_STYLE[f.severity]}]{label}[/]  [bold]{f.rule_id}[/]")
        con.print(f"  {escape(f.reason)}")
        if f.needed_by:
            con.print(f"  [dim]needed by: {', '.join(f.needed_by)}[/]")
        if f.unverified and f.note:
            con.print(f"  [magenta]unverified:[/] {escape(f.note)}")
        for s in f.source:
            con.print(f"  [dim]source: {escape(_cite(s))}[/]")


# --------------------------------------------------------------------------- plan / taper


def _print_plan(plan: DosePlan, title: str) -> None:
    con = _out()
    con.print(f"[bold]{escape(title)}[/]")
    if plan.ceiling_mg_day is not None:
        lim = plan.binding_limit
        con.print(
            f"  Ceiling: {plan.ceiling_mg_day:.4g} mg/day"
            + (f" — {escape(lim.reason)}" if lim else "")
        )
    table = Table()
    for col in ("date", "doses", "total mg"):
        table.add_column(col)
    for day in plan.days:
        doses = ", ".join(f"{d.time_slot} {d.mg:g} mg" for d in day.doses)
        table.add_row(day.date.isoformat(), doses, f"{day.total_mg:g}")
    con.print(table)
    if plan.continues:
        con.print(
            f"  Then continue {escape(plan.steps[-1].to_dict()['dose'] or '')} "
            f"after {plan.end_date.isoformat()}."
        )
    if plan.stop_date is not None:
        con.print(f"  Stop on {plan.stop_date.isoformat()} (no doses from that day).")
    for note in plan.notes:
        srcs = "; ".join(s.citation for s in note.source)
        con.print(f"  • {escape(note.text)}" + (f" [dim]({escape(srcs)})[/]" if srcs else ""))


def _parse(fn: Any, value: str, field: str, **kw: Any) -> Any:
    try:
        return fn(value, field, **kw)
    except MedicationInputError as exc:
        _refuse(exc)


@med_app.command("plan")
def plan_command(
    medication: Annotated[str, typer.Argument(metavar="MEDICATION")],
    target: Annotated[str, typer.Option(help="Target dose, e.g. 20mg-tid.")],
    start: Annotated[
        str | None, typer.Option(help="Start dose, e.g. 5mg-tid (default: the label's).")
    ] = None,
    step: Annotated[
        str | None, typer.Option(help="Increase per dose, e.g. 5mg (default: the label's).")
    ] = None,
    every: Annotated[
        str | None, typer.Option(help="Days between steps, e.g. 3d (default: the label's).")
    ] = None,
    hold: Annotated[str | None, typer.Option(help="Days to list at the target, e.g. 3d.")] = None,
    start_date: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: today).")
    ] = None,
    protocol_max_mg_day: Annotated[
        float | None, typer.Option(help="Program protocol maximum, mg/day.")
    ] = None,
    age: Annotated[float | None, typer.Option(help="Age in years (for kidney limits).")] = None,
    sex: Annotated[str | None, typer.Option(help="female or male (for kidney limits).")] = None,
    weight_kg: Annotated[float | None, typer.Option(help="Weight, kg (for kidney limits).")] = None,
    weight_lb: Annotated[float | None, typer.Option(help="Weight, lb (for kidney limits).")] = None,
    creatinine_mg_dl: Annotated[float | None, typer.Option(help="Serum creatinine, mg/dL.")] = None,
    creatinine_umol_l: Annotated[
        float | None, typer.Option(help="Serum creatinine, µmol/L.")
    ] = None,
    dialysis: Annotated[bool | None, typer.Option("--dialysis/--no-dialysis")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Titration calendar from START to TARGET, bounded by the maximum and kidney function."""
    mono = _monograph(medication)
    label = mono.dosing.titration
    target_dose: Dose = _parse(parse_dose, target, "target")
    renal = _renal(
        age, sex, _weight(weight_kg, weight_lb), creatinine_mg_dl, creatinine_umol_l, dialysis
    )
    # The label's start and step, reduced for kidney function when a kidney rule says so.
    reduced = renal_titration(mono.id, renal)
    if start is not None:
        start_dose: Dose = _parse(parse_dose, start, "start")
    elif reduced is not None:
        start_dose = reduced[0]
    elif label is not None:
        start_dose = label.start
    else:
        _fail("--start", f"{mono.name} has no labelled titration; give --start")
    if step is not None:
        step_mg: float = _parse(parse_mg, step, "step_mg")
    elif reduced is not None:
        step_mg = reduced[1]
    elif label is not None:
        step_mg = label.step_mg
    else:
        _fail("--step", f"{mono.name} has no labelled titration; give --step")
    if every is not None:
        every_days: int = _parse(parse_days, every, "every_days")
    elif label is not None:
        every_days = label.every_days
    else:
        _fail("--every", f"{mono.name} has no labelled titration; give --every")
    hold_days = None if hold is None else _parse(parse_days, hold, "hold_days")
    first = _date(start_date, "--start-date")
    try:
        plan = titration(
            mono.id,
            start_dose,
            step_mg,
            every_days,
            target_dose,
            first,
            renal=renal,
            protocol_max_mg_day=protocol_max_mg_day,
            hold_days=hold_days,
        )
    except MedicationInputError as exc:
        _refuse(exc)
    if as_json:
        _emit_json(plan.to_dict())
        return
    _print_plan(plan, f"{mono.name} titration {start_dose} → {target_dose}")


@med_app.command("taper")
def taper_command(
    medication: Annotated[str, typer.Argument(metavar="MEDICATION")],
    from_: Annotated[str, typer.Option("--from", help="Current dose, e.g. 20mg-tid.")],
    over: Annotated[str, typer.Option("--over", help="Taper length, e.g. 14d or 2w.")],
    start_date: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: today).")
    ] = None,
    unit: Annotated[
        str | None,
        typer.Option("--unit", help="Smallest dose change, e.g. 5mg (default: the monograph's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Taper calendar from the current dose to stopping. A 0-day taper is refused where
    stopping at once is dangerous."""
    mono = _monograph(medication)
    dose: Dose = _parse(parse_dose, from_, "from_dose")
    over_days: int = _parse(parse_days, over, "over_days", allow_zero=True)
    unit_mg = None if unit is None else _parse(parse_mg, unit, "unit_mg")
    first = _date(start_date, "--start-date")
    try:
        plan = taper(mono.id, dose, over_days, first, unit_mg=unit_mg)
    except MedicationInputError as exc:
        _refuse(exc)
    if as_json:
        _emit_json(plan.to_dict())
        return
    _print_plan(plan, f"{mono.name} taper from {dose} over {over_days} days")


# --------------------------------------------------------------------------- sweep


@med_app.command("sweep")
def sweep_command(
    as_email: Annotated[
        str, typer.Option("--as", help="The prescriber or administrator the check runs as.")
    ],
) -> None:
    """Check every active dose plan for a run of missed doses and raise the prescriber's alert
    (once per run). Run it on a schedule, e.g. hourly; recording a dose checks that plan at once."""
    from sqlalchemy import select

    from tandem.access.audit import Origin
    from tandem.access.credentials import actor_for
    from tandem.access.guard import Access, AccessDenied
    from tandem.medications.missed_doses import sweep_missed_doses
    from tandem.settings import Settings
    from tandem.storage.db import make_engine, make_sessionmaker, session_scope
    from tandem.storage.migrate import upgrade
    from tandem.storage.models import User

    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError, told plainly
        _fail("TANDEM_DATABASE_URL", str(exc).splitlines()[0])
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    try:
        with session_scope(sessions) as db:
            user = db.scalar(select(User).where(User.email == as_email.strip().lower()))
            if user is None or not user.active:
                _fail("--as", f"no active user {as_email!r}")
            access = Access(actor_for(user), Origin(channel="cli"), db, sessions)
            alerts = sweep_missed_doses(access, now=datetime.now(tz=UTC))
            raised = [(a.id, a.title) for a in alerts]
    except AccessDenied as exc:
        _fail("--as", f"refused: {exc.reason}")
    finally:
        engine.dispose()
    for alert_id, title in raised:
        typer.echo(f"alert {alert_id}: {title}")
    typer.echo(f"{len(raised)} missed-dose alert{'s' if len(raised) != 1 else ''} raised.")


# --------------------------------------------------------------------------- shifts


@med_app.command("shifts")
def shifts_command(
    program: Annotated[str, typer.Argument(help="program code")],
    starts: Annotated[
        list[str] | None,
        typer.Argument(help="shift start times on the program's clock, e.g. 07:00 19:00"),
    ] = None,
    source: Annotated[str, typer.Option(help="where the times come from")] = "program setting",
) -> None:
    """Show a program's nursing shift start times, or set them (the unit's medication record
    lists the doses of one shift)."""
    from sqlalchemy import select

    from tandem.access import audit
    from tandem.errors import InvalidInput
    from tandem.medications.storage import ShiftSettingRow
    from tandem.medications.unit_mar import program_shift_times, set_program_shifts
    from tandem.platform_cli import CLI_ORIGIN
    from tandem.settings import Settings
    from tandem.storage.db import make_engine, make_sessionmaker, session_scope
    from tandem.storage.migrate import upgrade
    from tandem.storage.models import Program

    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError, told plainly
        _fail("TANDEM_DATABASE_URL", str(exc).splitlines()[0])
    engine = make_engine(settings.database_url)
    upgrade(engine)
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            row = db.scalar(select(Program).where(Program.code == program.strip()))
            if row is None:
                _fail("PROGRAM", f"no program {program!r}")
            if starts:
                try:
                    set_program_shifts(db, row.id, " ".join(starts), source)
                except InvalidInput as exc:
                    _fail("STARTS", exc.message)
                db.add(
                    audit.entry(
                        None,
                        "update",
                        CLI_ORIGIN,
                        resource_type="Program",
                        resource_id=str(row.id),
                        detail=f"shift start times {' '.join(starts)}",
                    )
                )
            setting = db.get(ShiftSettingRow, row.id)
            times = program_shift_times({row.id: setting} if setting else {}, row.id)
            line = f"{row.code}: shifts start {times.text} ({row.time_zone}); {times.source}"
    finally:
        engine.dispose()
    typer.echo(line)
