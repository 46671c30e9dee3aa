"""Whatever a client sends to /fhir/Patient, the answer is a 2xx resource or a 4xx OperationOutcome:
never a 500, and a refused body stores nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tandem.storage.models import Patient
from tests.conftest import make_token

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=12),
    st.sampled_from(["1990-01-01", "2999-01-01", "1990-13-40", "female", "robot", "ALP-1"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
patientish = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Patient", "Patient", "Observation", ""])},
    optional={
        "name": st.one_of(
            json_value,
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"family": json_leaf, "given": st.lists(json_leaf, max_size=2)}
                ),
                max_size=2,
            ),
        ),
        "gender": json_leaf,
        "birthDate": json_leaf,
        "identifier": st.one_of(
            json_value,
            st.lists(
                st.fixed_dictionaries({}, optional={"system": json_leaf, "value": json_leaf}),
                max_size=2,
            ),
        ),
        "telecom": json_value,
        "managingOrganization": st.one_of(
            json_value, st.fixed_dictionaries({"reference": json_leaf})
        ),
        "active": json_leaf,
        "extension": json_value,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=patientish)
def test_any_body_gets_a_resource_or_an_outcome(client, sessions, world, body) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    with sessions() as db:
        before = db.scalar(select(func.count()).select_from(Patient))
    response = client.post(
        "/fhir/Patient",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert response.status_code < 500, response.text
    with sessions() as db:
        after = db.scalar(select(func.count()).select_from(Patient))
    if response.status_code == 201:
        assert response.json()["resourceType"] == "Patient" and after == before + 1
    else:
        assert 400 <= response.status_code < 500
        assert response.json()["resourceType"] == "OperationOutcome"
        assert after == before
