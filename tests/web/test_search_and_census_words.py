"""Small things a ward notices: the app's own name format finds the patient; a baseline due
since admission says for how long (SQLite and PostgreSQL)."""

from __future__ import annotations

import re

from tests.conftest import World, sign_in
from tests.withdrawal.helpers import admit_to_detox


def test_the_apps_own_name_format_finds_the_patient(client, world: World) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    for typed in ("RIVERA, Ana", "Rivera,Ana", "rivera, an"):
        found = client.get("/patients", params={"q": typed}).text
        assert "RIVERA, Ana" in found and "OKAFOR" not in found, typed


def test_a_baseline_due_since_admission_says_for_how_long(client, sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a, hours_ago=3 + 10 / 60)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    census = client.get(f"/detox/units/{world.unit_a_detox}").text
    assert re.search(r"Baseline due for 3 h (9|10|11) min", census), census[:2000]
