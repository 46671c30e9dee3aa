"""A visitor asks a counselor on a phone, a counselor answers, the visitor reads the answer at
their private link."""

from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser

QUESTION = "My dad finished detox last week. How can we help him at home?"
REPLY = "Thank you for asking. Keep evenings calm and come to the family group on Tuesdays."


def test_a_visitor_asks_on_a_phone_and_reads_the_counselors_answer(browser, live_server) -> None:
    desk = browser.new_context(viewport={"width": 1280, "height": 900})
    counselor = desk.new_page()
    counselor.set_default_timeout(15_000)
    sign_in(counselor, live_server, "counselor")
    counselor.get_by_role("link", name="Questions").first.click()
    counselor.wait_for_load_state()
    program = counselor.locator("h1 .hint").inner_text().strip()

    phone = browser.new_context(viewport={"width": 375, "height": 800})
    visitor = phone.new_page()
    visitor.set_default_timeout(15_000)
    errors: list[str] = []
    visitor.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    visitor.goto(live_server.url + "/login")
    visitor.get_by_role("link", name="ask a counselor").click()
    visitor.wait_for_load_state()
    assert visitor.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(visitor, "ask-phone-form", full_page=False)
    if visitor.locator("#program").count():
        visitor.select_option("#program", label=program)
    visitor.get_by_label("Your question").fill(QUESTION)
    visitor.get_by_role("button", name="Send").click()
    visitor.wait_for_load_state()
    assert "Your question is sent" in visitor.inner_text("body")
    link = visitor.locator(".private-link a").get_attribute("href")
    assert link and "/ask/t/" in link
    assert visitor.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(visitor, "ask-phone-sent", full_page=False)

    counselor.reload()
    screenshot(counselor, "questions-queue-desktop", full_page=False)
    counselor.get_by_role("link", name=QUESTION[:30], exact=False).first.click()
    counselor.wait_for_load_state()
    counselor.get_by_role("button", name="Assign to me").click()
    counselor.wait_for_load_state()
    counselor.get_by_label("Reply to the asker", exact=False).fill(REPLY)
    counselor.get_by_role("button", name="Send reply").click()
    counselor.wait_for_load_state()
    assert REPLY in counselor.inner_text("body")
    screenshot(counselor, "question-answered-desktop", full_page=False)

    visitor.goto(link)
    text = visitor.inner_text("body")
    assert REPLY in text and "Answered" in text
    assert visitor.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(visitor, "ask-phone-answer", full_page=False)
    # A signed-in patient asks from their own record, on the same phone.
    sign_in(visitor, live_server, "patient")
    visitor.get_by_role("link", name="Questions").click()
    visitor.wait_for_load_state()
    visitor.get_by_role("textbox", name="Your question").fill("Can I bring my own pillow?")
    visitor.get_by_role("button", name="Send").click()
    visitor.wait_for_load_state()
    assert "Sent. A counselor will answer here." in visitor.inner_text("body")
    assert visitor.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(visitor, "patient-phone-questions", full_page=False)
    assert not errors, errors
    desk.close()
    phone.close()
