"""The pure core: crisis phrases, what the form accepts, the states of a question."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tandem.counseling import crisis, triage
from tandem.errors import InvalidInput

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "I want to kill myself",
        "thinking about SUICIDE lately",
        "my son took too   many pills and won't wake up",
        "I have been cutting myself again",
        "She OD'd last night",
        "I’d be better off dead",
        "self-harm",
    ],
)
def test_crisis_words_make_a_message_urgent(text: str) -> None:
    assert crisis.signal(text)


@pytest.mark.parametrize(
    "text",
    [
        "How long does detox take?",
        "Is naltrexone safe with my blood pressure pills?",
        "die-hard fan of the program",  # "die" alone is no phrase
        "my overdoses? no: I dosed over the weekend",  # words, not parts of words
    ],
)
def test_ordinary_questions_are_not_urgent(text: str) -> None:
    assert not crisis.signal(text)


def test_every_resource_has_a_source_and_a_number() -> None:
    resources = {r.id: r for r in crisis.resources()}
    assert resources["emergency"].tel == "911"
    assert resources["lifeline_988"].tel == "988" and resources["lifeline_988"].sms == "988"
    assert resources["samhsa_helpline"].tel == "18006624357"
    assert all(r.source.url for r in resources.values())


def test_a_question_over_the_limit_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as refused:
        triage.check_ask(triage.AskForm(question="x" * 2001), "UTC", NOW)
    assert refused.value.field == "question"
    assert "at most 2,000 characters" in refused.value.message
    assert triage.check_ask(triage.AskForm(question="x" * 2000), "UTC", NOW).question


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "hello <img src=x onerror=alert(1)>",
        "<a href='javascript:alert(1)'>x</a>",
        "click javascript:alert(1)",
    ],
)
def test_markup_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        triage.check_ask(triage.AskForm(question=text), "UTC", NOW)
    assert refused.value.field == "question"


def test_plain_text_with_angle_brackets_is_kept() -> None:
    ask = triage.check_ask(triage.AskForm(question="I <3 my sponsor; dose < 5 mg?"), "UTC", NOW)
    assert ask.question == "I <3 my sponsor; dose < 5 mg?"


def test_a_call_back_needs_a_phone_and_a_window_in_the_future() -> None:
    base = triage.AskForm(kind="callback", callback_date="2026-12-02", callback_from="09:00")
    with pytest.raises(InvalidInput) as no_phone:
        triage.check_ask(base, "America/New_York", NOW)
    assert no_phone.value.field == "phone"
    with pytest.raises(InvalidInput) as short:
        triage.check_ask(
            triage.AskForm(**{**base.__dict__, "phone": "555 0100", "callback_to": "09:15"}),
            "America/New_York",
            NOW,
        )
    assert short.value.field == "callback_to"
    with pytest.raises(InvalidInput) as past:
        triage.check_ask(
            triage.AskForm(
                kind="callback",
                phone="555 0100",
                callback_date="2026-11-30",
                callback_from="09:00",
                callback_to="10:00",
            ),
            "UTC",
            NOW,
        )
    assert past.value.field == "callback_date"
    ask = triage.check_ask(
        triage.AskForm(**{**base.__dict__, "phone": "+1 (555) 010-0100", "callback_to": "11:00"}),
        "America/New_York",
        NOW,
    )
    assert ask.window is not None
    assert ask.window.start == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)  # 09:00 in New York
    assert ask.window.end - ask.window.start == timedelta(hours=2)


def test_states_go_new_assigned_answered_closed() -> None:
    status = triage.NEW
    status = triage.after_assign(status)
    assert status == triage.ASSIGNED
    status = triage.after_reply(status)
    assert status == triage.ANSWERED
    assert triage.after_assign(status) == triage.ANSWERED  # taking over keeps it answered
    status = triage.after_close(status)
    assert status == triage.CLOSED
    for step in (triage.after_assign, triage.after_reply, triage.after_close):
        with pytest.raises(InvalidInput):
            step(status)


def test_queue_order_is_urgent_first_then_oldest() -> None:
    rows = [
        (False, NOW - timedelta(hours=5), 1),
        (True, NOW, 2),
        (False, NOW - timedelta(days=1), 3),
    ]
    ordered = sorted(rows, key=lambda r: triage.queue_key(*r))
    assert [r[2] for r in ordered] == [2, 3, 1]


def test_the_rate_limit_counts_the_last_hour_across_the_turn_of_the_hour(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tandem.counseling import limits
    from tandem.storage.db import make_engine, make_sessionmaker
    from tandem.storage.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    late = datetime(2026, 12, 1, 14, 59, tzinfo=UTC)
    for _ in range(5):
        assert not limits.count_post(sessions, "203.0.113.9", late, 5).over
    # Two minutes later, in the next clock hour: the five are still within the last hour.
    assert limits.count_post(sessions, "203.0.113.9", late + timedelta(minutes=2), 5).over
    assert not limits.count_post(sessions, "203.0.113.10", late + timedelta(minutes=2), 5).over
    # Near the end of that next hour, the previous hour's posts have (mostly) left the window.
    assert not limits.count_post(sessions, "203.0.113.9", late + timedelta(minutes=58), 5).over
    engine.dispose()
