"""The assessment form shows each scale's own words as compactly as the printed column, with no
provenance in it; the wording and its sources live on the scale's page, one link away."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape

from tests.conftest import World, sign_in
from tests.withdrawal.helpers import admit_to_detox

from .facts import ANCHORS

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py

PROVENANCE = (
    "Sullivan",
    "Wesson",
    "CamCOPS",
    "MDCalc",
    "UpToDate",
    "TIP 45",
    "fact sheet",
    "facts sheet",
    "cgakit",
    "Read in:",
)


@pytest.mark.parametrize("instrument_id", sorted(ANCHORS))
def test_the_form_shows_the_scales_words_and_links_to_its_sources(
    client, sessions, world: World, instrument_id: str
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])

    form = client.get(f"/patients/{world.patient_a}/withdrawal/assess?instrument={instrument_id}")

    assert form.status_code == 200
    for item_id, anchors in ANCHORS[instrument_id].items():
        for value, text in anchors.items():
            choice = re.search(rf'name="{item_id}" value="{value}".*?</label>', form.text, re.S)
            assert choice, (item_id, value)
            if text is None:  # the number alone, as the printed form shows it
                assert 'class="anchor"' not in choice.group(0), (item_id, value)
            else:
                assert f'<span class="anchor">{escape(text)}</span>' in choice.group(0)
    assert "not transcribed" not in form.text and "wording unverified" not in form.text
    for word in PROVENANCE:
        assert word not in form.text, word
    assert f'href="/scales/{instrument_id}#sources"' in form.text


def test_ciwa_ar_blank_grades_are_compact_numbers(client, sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])

    form = client.get(f"/patients/{world.patient_a}/withdrawal/assess?instrument=ciwa_ar")

    assert form.text.count('class="choice bare"') == 5 * 4  # items 1-5, grades 2, 3, 5, 6


def test_the_scale_page_gives_each_items_sources_and_the_variant_wordings(
    client, world: World
) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])

    page = client.get("/scales/ciwa_ar")

    assert page.status_code == 200
    assert 'id="sources"' in page.text and 'id="src-camcops"' in page.text
    assert 'href="#src-mdcalc"' in page.text  # each item names the reproductions it was read in
    assert "https://www.mdcalc.com/calc/1736/ciwa-ar-alcohol-withdrawal" in page.text
    assert "mildly anxious" in page.text  # the variant wording, kept beside the form's
    assert "Every answer's wording was checked" in page.text
    cows = client.get("/scales/cows")
    assert cows.status_code == 200 and "NBK64244" in cows.text


def test_an_unknown_scale_is_not_found_and_the_page_needs_a_sign_in(client, world: World) -> None:
    assert client.get("/scales/ciwa_ar", follow_redirects=False).status_code in (302, 303)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    assert client.get("/scales/nope").status_code == 404
