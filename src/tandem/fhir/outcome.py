"""Errors as FHIR OperationOutcome, with the status a client can act on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    def __init__(
        self, status: int, code: str, diagnostics: str, expression: Sequence[str] = ()
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = list(expression)


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def issue(
    code: str, diagnostics: str, expression: Sequence[str] = (), severity: str = "error"
) -> dict[str, Any]:
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        entry["expression"] = list(expression)
    return entry


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def outcome_response(
    status: int,
    code: str,
    diagnostics: str,
    expression: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> FhirJSONResponse:
    return FhirJSONResponse(
        operation_outcome([issue(code, diagnostics, expression)]),
        status_code=status,
        headers=headers,
    )


def pydantic_issues(errors: Sequence[Any], resource_type: str = "") -> list[dict[str, Any]]:
    issues = []
    for err in errors:
        path = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        where = f"{resource_type}.{path}" if resource_type and path else (path or resource_type)
        issues.append(
            issue(
                "invalid" if err.get("type") != "missing" else "required",
                f"{where}: {err.get('msg', 'invalid')}",
                [where] if where else (),
            )
        )
    return issues


def validation_outcome(
    errors: Sequence[Any], resource_type: str = "", status: int = 400
) -> FhirJSONResponse:
    return FhirJSONResponse(
        operation_outcome(pydantic_issues(errors, resource_type)), status_code=status
    )
