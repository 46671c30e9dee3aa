"""What the FHIR API really supports: each domain lists its `ResourceSupport` in its DOMAIN."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tandem import __version__


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str
    documentation: str = ""


@dataclass(frozen=True)
class ResourceSupport:
    type: str
    interactions: tuple[str, ...]
    search_params: tuple[SearchParam, ...] = ()
    versioning: str = "no-version"
    documentation: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


def merged(supports: Iterable[ResourceSupport]) -> list[ResourceSupport]:
    """One entry a resource type: several domains may each support part of one type (the
    withdrawal scores and the recovery measures are both Observations)."""
    by_type: dict[str, ResourceSupport] = {}
    for support in supports:
        seen = by_type.get(support.type)
        if seen is None:
            by_type[support.type] = support
            continue
        params = {p.name: p for p in seen.search_params}
        for p in support.search_params:
            if p.name in params and p.documentation and params[p.name].documentation:
                both = f"{params[p.name].documentation}; or {p.documentation}"
                params[p.name] = SearchParam(p.name, p.type, both)
            elif p.name not in params:
                params[p.name] = p
        by_type[support.type] = ResourceSupport(
            type=support.type,
            interactions=tuple(dict.fromkeys((*seen.interactions, *support.interactions))),
            search_params=tuple(params.values()),
            versioning=seen.versioning,
            documentation=" ".join(d for d in (seen.documentation, support.documentation) if d),
            extras={**seen.extras, **support.extras},
        )
    return list(by_type.values())


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def capability_statement(
    base_url: str,
    now_iso: str,
    supports: Iterable[ResourceSupport],
    oauth: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`oauth`: the SMART endpoints (authorize, token, revoke), declared in the security
    extension as SMART App Launch asks (/.well-known/smart-configuration says the same)."""
    resources = []
    for support in sorted(merged(supports), key=lambda s: s.type):
        entry: dict[str, Any] = {
            "type": support.type,
            "interaction": [{"code": code} for code in support.interactions],
            "versioning": support.versioning,
        }
        if support.search_params:
            entry["searchParam"] = [
                {
                    "name": p.name,
                    "type": p.type,
                    **({"documentation": p.documentation} if p.documentation else {}),
                }
                for p in support.search_params
            ]
        if support.documentation:
            entry["documentation"] = support.documentation
        if support.versioning != "no-version":
            entry["readHistory"] = False
            entry["updateCreate"] = False
        entry.update(support.extras)
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now_iso,
        "kind": "instance",
        "software": {"name": "Tandem", "version": __version__},
        "implementation": {"description": "Tandem FHIR R4 API", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    **(
                        {
                            "extension": [
                                {
                                    "url": OAUTH_URIS,
                                    "extension": [
                                        {"url": name, "valueUri": uri}
                                        for name, uri in oauth.items()
                                    ],
                                }
                            ]
                        }
                        if oauth
                        else {}
                    ),
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "SMART App Launch (authorization code with PKCE, refresh "
                    "tokens) and SMART Backend Services (client credentials with a signed JWT) for "
                    "apps an administrator registers; or bearer tokens made by `tandem token "
                    "create`. SMART v2 scopes (user/Patient.rs, user/*.cruds, patient/*.rs).",
                },
                "resource": resources,
            }
        ],
    }
