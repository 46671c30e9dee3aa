"""SMART on FHIR scopes (v2 `user/Patient.rs`, `patient/*.cruds`; v1 `user/*.read`, `.write`, `.*`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perms>[cruds]+|read|write|\*)$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_ORDER = "cruds"


class ScopeError(ValueError):
    pass


@dataclass(frozen=True)
class Scope:
    context: str  # patient | user | system
    resource_type: str  # a FHIR type or "*"
    permissions: str  # a subset of "cruds"

    def grants(self, resource_type: str, permission: str) -> bool:
        return self.resource_type in ("*", resource_type) and permission in self.permissions

    def __str__(self) -> str:
        return f"{self.context}/{self.resource_type}.{self.permissions}"


def parse_scope(text: str) -> Scope:
    match = _SCOPE.match(text.strip())
    if not match:
        raise ScopeError(
            f"{text!r} is not a SMART scope: use context/Type.permissions, "
            "e.g. user/Patient.rs, user/*.cruds or patient/*.rs"
        )
    perms = match["perms"]
    if perms in _V1:
        perms = _V1[perms]
    elif "".join(sorted(perms, key=_ORDER.index)) != perms or len(set(perms)) != len(perms):
        raise ScopeError(
            f"{text!r}: permissions must be in the order c, r, u, d, s without repeats"
        )
    return Scope(match["context"], match["type"], perms)


def parse_scopes(text: str) -> tuple[Scope, ...]:
    return tuple(parse_scope(part) for part in text.split())


def is_resource_scope(text: str) -> bool:
    return bool(_SCOPE.match(text.strip()))


def resource_scopes(text: str) -> str:
    """The resource scopes (context/Type.permissions) among a grant's scopes, normalized; the
    others (launch/patient, offline_access, ...) say what was granted besides data access."""
    return " ".join(str(parse_scope(part)) for part in text.split() if is_resource_scope(part))
