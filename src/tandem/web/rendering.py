"""Server-rendered pages: one Jinja environment over every domain's `templates/` folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tandem.access.policy import ROLE_LABELS, PatientRef, Role, may
from tandem.clock import duration_text
from tandem.domains import nav_for

PACKAGE = Path(__file__).resolve().parent.parent
WARN_BEFORE_END_SECONDS = 120


def _template_dirs() -> list[str]:
    dirs = [str(PACKAGE / "web" / "templates")]
    dirs += sorted(str(p) for p in PACKAGE.glob("*/templates") if p.parent.name != "web")
    return dirs


def _local(value: datetime | None, zone: str = "UTC", fmt: str = "%d %b %Y %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(zone)).strftime(fmt)


env = Environment(
    loader=FileSystemLoader(_template_dirs()),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    # The templates ship with the package and do not change while it runs: without this, every
    # `{% include %}` and `{% extends %}` asks the disk whether the file changed (a stat each).
    auto_reload=False,
)
env.filters["local"] = _local
env.globals["nav_for"] = nav_for
env.globals["duration"] = duration_text
env.globals["role_label"] = lambda role: ROLE_LABELS.get(Role(role), role)
templates = Jinja2Templates(env=env)


def _may_for(request: Request) -> Callable[..., bool]:
    """`may(action, patient=None, program_id=None)` for templates: the one policy, asked for the
    signed-in person (`patient`: a stored patient or a `PatientRef`). Nobody signed in: False."""
    access = getattr(request.state, "access", None)

    def ask(action: str, patient: Any = None, program_id: int | None = None) -> bool:
        if access is None:
            return False
        ref = patient
        if patient is not None and not isinstance(patient, PatientRef):
            ref = PatientRef(patient.id, patient.program_id)
        return bool(may(access.actor, action, ref, program_id))

    return ask


def _nav_badge_for(request: Request) -> Callable[[Any], int | None]:
    """`nav_badge(item)` for the layout: the item's number for the signed-in person, or None."""
    access = getattr(request.state, "access", None)

    def badge(item: Any) -> int | None:
        if access is None or getattr(item, "badge", None) is None:
            return None
        return item.badge(access)  # type: ignore[no-any-return]

    return badge


def _session_timing(request: Request) -> dict[str, int | bool] | None:
    """For tandem.js's warning before the session ends: the seconds left when the page was made,
    and how long before the end to warn (two minutes, or half a very short idle limit)."""
    left = getattr(request.state, "session_left", None)
    if left is None:
        return None
    idle_seconds = request.app.state.settings.session_idle_minutes * 60
    return {
        "left": left.seconds,
        "warn": min(WARN_BEFORE_END_SECONDS, idle_seconds // 2),
        "at_lifetime": left.at_lifetime,
    }


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("user", getattr(request.state, "viewer", None))
    context.setdefault("csrf_token", getattr(request.state, "csrf_token", ""))
    context.setdefault("flash", request.query_params.get("flash"))
    context.setdefault("may", _may_for(request))
    context.setdefault("nav_badge", _nav_badge_for(request))
    context.setdefault("session", _session_timing(request))
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response
