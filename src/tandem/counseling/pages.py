"""Pages: "Ask a counselor" (public, no sign-in) and its private link; a patient's questions in
their record; the counselors' queue and a question as they work it. Thin: parse, call one
service function, answer."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from tandem.access.anonymous import record_refusal
from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import load_patient
from tandem.clock import utcnow
from tandem.counseling import crisis, limits, questions, triage
from tandem.errors import InvalidInput, NotFound
from tandem.kit import ChartTab, NavItem
from tandem.patients.pages import chart_page
from tandem.storage.models import Program
from tandem.web.deps import (
    UnitOfWorkRoute,
    csrf_form,
    form_of,
    form_refused,
    open_db,
    origin_of,
    page_access,
    read_form,
    sessions_of,
    settings_of,
)
from tandem.web.forms import row_id
from tandem.web.limits import refuse_nul
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

ASK_CSRF_COOKIE = "tandem_ask_csrf"
HONEYPOT = "website"  # hidden from people; a form-filling robot fills it


def _urgent_badge(access: Any) -> int:
    return questions.urgent_waiting(access)


NAV = NavItem(
    "questions", "Questions", "/questions", frozenset({"counselor"}), 28, badge=_urgent_badge
)
CHART_TAB = ChartTab("questions", "Questions", "/questions", 80)


def _private(response: Response) -> Response:
    """A page holding (or reached by) a private link: the link never leaves in a Referer."""
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --------------------------------------------------------------------------- the public page


def public_db(request: Request) -> Session:
    """The request's session for a page anyone may open (the unit of work ends it)."""
    return open_db(request)


def _ask_form(form: FormData) -> triage.AskForm:
    def text(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    return triage.AskForm(
        kind=text("kind") or "question",
        question=text("question"),
        name=text("name"),
        phone=text("phone"),
        callback_date=text("callback_date"),
        callback_from=text("callback_from"),
        callback_to=text("callback_to"),
    )


def _ask_page(
    request: Request,
    db: Session,
    status_code: int = 200,
    *,
    values: triage.AskForm | None = None,
    program_id: str = "",
    error: InvalidInput | None = None,
    show_crisis: bool = False,
) -> Response:
    token = secrets.token_urlsafe(24)
    programs = questions.programs_taking_questions(db)
    response = render(
        request,
        "counseling/ask.html",
        status_code=status_code,
        programs=programs,
        program_id=program_id or request.query_params.get("program", ""),
        values=values or triage.AskForm(),
        error=error,
        ask_csrf=token,
        show_crisis=show_crisis,
        resources=crisis.resources(),
        limits=triage,
    )
    response.set_cookie(
        ASK_CSRF_COOKIE,
        token,
        httponly=True,
        secure=settings_of(request).cookie_secure,
        samesite="strict",
        max_age=3600,
        path="/ask",
    )
    return response


@router.get("/ask")
def ask_form(request: Request, db: Session = Depends(public_db)) -> Response:
    return _ask_page(request, db)


def _sent_page(request: Request, token: str, urgent: bool, kind: str) -> Response:
    link = str(request.base_url).rstrip("/") + f"/ask/t/{token}"
    return _private(
        render(
            request,
            "counseling/sent.html",
            link=link,
            urgent=urgent,
            kind=kind,
            resources=crisis.resources(),
        )
    )


@router.post("/ask")
def ask(
    request: Request, form: FormData = Depends(read_form), db: Session = Depends(public_db)
) -> Response:
    now = utcnow()
    origin = origin_of(request, "web")
    values = _ask_form(form)
    program = str(form.get("program", ""))
    # Counted first, in its own transaction: a refused or failed post counts as well.
    counted = limits.count_post(
        sessions_of(request), origin.source_ip, now, settings_of(request).ask_max_per_hour
    )
    worried = bool(crisis.signal(values.question[: triage.MAX_QUESTION * 2]))
    if counted.over:
        response = render(
            request,
            "counseling/slow_down.html",
            status_code=429,
            minutes=counted.retry_after_minutes,
            resources=crisis.resources(),
        )
        response.headers["Retry-After"] = str(counted.retry_after_minutes * 60)
        return response
    sent = form.get("csrf_token")
    expected = request.cookies.get(ASK_CSRF_COOKIE, "")
    if not isinstance(sent, str) or not sent or not secrets.compare_digest(sent, expected):
        return _ask_page(
            request,
            db,
            403,
            values=values,
            program_id=program,
            error=InvalidInput("form", "The form expired. Please check it and send it again."),
            show_crisis=worried,
        )
    if form.get(HONEYPOT):
        # A robot filled the hidden field: it is told its question was sent; nothing is stored.
        return _sent_page(request, questions.new_token(), False, values.kind)
    try:
        refuse_nul(request, form)
        chosen = row_id(program)
        if chosen is None:
            raise InvalidInput("program", "Program: choose one of the programs listed")
        asked = questions.ask_as_visitor(db, sessions_of(request), origin, chosen, values, now)
    except InvalidInput as exc:
        return _ask_page(
            request, db, 422, values=values, program_id=program, error=exc, show_crisis=worried
        )
    assert asked.token is not None  # noqa: S101 (a visitor's question has a link)
    return _sent_page(request, asked.token, asked.question.urgent, asked.question.kind)


@router.get("/ask/t/{token}")
def private_link(request: Request, token: str, db: Session = Depends(public_db)) -> Response:
    thread = questions.by_token(db, origin_of(request, "web"), token)
    if thread is None:
        # Counted per address and minute, the first audited: guessing links cannot flood the trail.
        record_refusal(
            sessions_of(request),
            origin_of(request, "web"),
            "a private link that opens no question",
            "/ask/t/",
            utcnow(),
        )
        return _private(render(request, "counseling/no_link.html", status_code=404))
    return _private(
        render(
            request,
            "counseling/thread.html",
            thread=thread,
            resources=crisis.resources(),
        )
    )


# --------------------------------------------------------------------------- a patient's record


def _patient_page(
    request: Request,
    access: Access,
    patient_id: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    patient = load_patient(access, patient_id, audit=False)
    threads = questions.patient_threads(access, patient)
    new_replies = questions.mark_read_by_asker(access, patient, utcnow())
    sent = request.query_params.get("sent", "")
    return chart_page(
        request,
        access,
        patient_id,
        "questions",
        "counseling/patient.html",
        status_code,
        threads=threads,
        new_replies=new_replies,
        own=access.actor.patient_id == patient.id,
        may_answer=bool(
            decide(
                access.actor, Permission.UPDATE, questions.MESSAGE, program_id=patient.program_id
            )
        ),
        sent=next((t for t in threads if str(t.question.id) == sent), None),
        resources=crisis.resources(),
        limits=triage,
        **{"values": triage.AskForm(), "error": None, **context},
    )


@router.get("/patients/{patient_id}/questions")
def patient_questions(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    return _patient_page(request, access, patient_id)


@router.post("/patients/{patient_id}/questions")
def patient_asks(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    values = _ask_form(form_of(request))
    try:
        asked = questions.ask_as_patient(access, patient_id, values, utcnow())
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _patient_page(request, access, patient_id, 422, values=values, error=exc)
    return RedirectResponse(
        f"/patients/{patient_id}/questions?sent={asked.question.id}#question-{asked.question.id}",
        status_code=303,
    )


# --------------------------------------------------------------------------- the counselors' queue


def _programs(access: Access) -> list[Program]:
    ids = sorted(
        p
        for p in access.actor.program_ids
        if decide(access.actor, Permission.SEARCH, questions.MESSAGE, program_id=p)
    )
    return list(
        access.db.scalars(select(Program).where(Program.id.in_(ids)).order_by(Program.name))
    )


@router.get("/questions")
def queue(
    request: Request, program: str = "", show: str = "open", access: Access = Depends(page_access)
) -> Response:
    programs = _programs(access)
    chosen = next((p for p in programs if str(p.id) == program), programs[0] if programs else None)
    if chosen is None:
        access.require(Permission.SEARCH, questions.MESSAGE, program_id=row_id(program) or 0)
    assert chosen is not None  # noqa: S101 (refused above otherwise)
    show = show if show in questions.SHOWS else "open"
    rows = questions.queue(access, chosen.id, show)
    return render(
        request,
        "counseling/queue.html",
        active="questions",
        programs=programs,
        program=chosen,
        show=show,
        rows=rows,
        urgent=sum(1 for r in rows if r.urgent),
        zone=chosen.time_zone,
        now=utcnow(),
        me=access.actor.user_id,
    )


def _detail_page(
    request: Request,
    access: Access,
    question_id: int,
    status_code: int = 200,
    error: InvalidInput | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    found = questions.detail(access, question_id)
    return render(
        request,
        "counseling/question.html",
        status_code=status_code,
        active="questions",
        d=found,
        q=found.thread.question,
        zone=found.program.time_zone,
        error=error,
        values=values or {},
        now=utcnow(),
        me=access.actor.user_id,
        limits=triage,
    )


def _question_id(raw: str) -> int:
    found = row_id(raw)
    if found is None:
        raise NotFound(f"question {raw[:20]} is not known")
    return found


@router.get("/questions/{question_id}")
def question(request: Request, question_id: str, access: Access = Depends(page_access)) -> Response:
    return _detail_page(request, access, _question_id(question_id))


def _act(request: Request, access: Access, question_id: str, action: str) -> Response:
    qid = _question_id(question_id)
    form = form_of(request)
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    now = utcnow()
    try:
        if action == "assign":
            questions.assign_to_me(access, qid, now)
        elif action == "reply":
            questions.reply(access, qid, values.get("reply", ""), now)
        elif action == "call":
            questions.schedule_call(access, qid, values.get("call_at", ""), now)
        elif action == "note":
            questions.add_note(access, qid, values.get("note", ""), now)
        else:
            questions.close(access, qid, now)
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _detail_page(request, access, qid, 422, exc, values)
    return RedirectResponse(f"/questions/{qid}?flash=saved", status_code=303)


@router.post("/questions/{question_id}/assign")
def assign(request: Request, question_id: str, access: Access = Depends(csrf_form)) -> Response:
    return _act(request, access, question_id, "assign")


@router.post("/questions/{question_id}/reply")
def reply(request: Request, question_id: str, access: Access = Depends(csrf_form)) -> Response:
    return _act(request, access, question_id, "reply")


@router.post("/questions/{question_id}/call")
def schedule_call(
    request: Request, question_id: str, access: Access = Depends(csrf_form)
) -> Response:
    return _act(request, access, question_id, "call")


@router.post("/questions/{question_id}/notes")
def add_note(request: Request, question_id: str, access: Access = Depends(csrf_form)) -> Response:
    return _act(request, access, question_id, "note")


@router.post("/questions/{question_id}/close")
def close(request: Request, question_id: str, access: Access = Depends(csrf_form)) -> Response:
    return _act(request, access, question_id, "close")
