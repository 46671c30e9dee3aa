"""The education library: every article validates with its sources, every monograph has an
article, and the pages read without signing in."""

from __future__ import annotations

from tandem.choice.decision_options import decision_aid, options_for
from tandem.choice.education import find, library, topic_articles
from tandem.medications.monograph import medication_ids
from tests.conftest import World


def test_every_monograph_and_topic_has_an_article_with_further_reading() -> None:
    topics, medications = library()
    assert {a.slug for a in medications} == set(medication_ids())
    assert {a.slug for a in topics} >= {
        "what-detox-is-like",
        "what-rehab-offers",
        "talking-to-a-counselor",
        "recovery-without-medication",
    }
    for article in topics:
        assert article.further_reading
        assert all(section.source for section in article.sections)
    for med in medications:
        assert med.further_reading(), med.slug


def test_every_situation_offers_medication_free_recovery() -> None:
    aid = decision_aid()
    for substance in aid.substances:
        for phase in aid.phases:
            assert options_for(substance, phase)[-1].id == "no_medication"


def test_learn_pages_read_without_signing_in(client, world: World) -> None:
    index = client.get("/learn")
    assert index.status_code == 200
    assert "What detox is like" in index.text and "Naltrexone" in index.text
    detox = client.get("/learn/what-detox-is-like")
    assert detox.status_code == 200 and "Further reading" in detox.text
    baclofen = client.get("/learn/baclofen")
    assert baclofen.status_code == 200
    assert "Off-label" in baclofen.text and "Further reading" in baclofen.text
    assert client.get("/learn/no-such-article").status_code == 404
    assert find("acamprosate") is not None and topic_articles()
