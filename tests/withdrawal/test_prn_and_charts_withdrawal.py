"""Pure helpers: a dose given must lie within the protocol's suggestion; the SVG charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tandem.withdrawal import charts
from tandem.withdrawal.prn import DoseRefused, check_dose, dose_range
from tandem.withdrawal.protocol import load_protocol


@pytest.mark.parametrize(
    ("text", "low", "high", "unit"),
    [
        ("25-50 mg", "25", "50", "mg"),
        ("2-3 mg", "2", "3", "mg"),
        ("1 mg", "1", "1", "mg"),
        ("0.5-1 mg", "0.5", "1", "mg"),
        ("75–100 mg", "75", "100", "mg"),
    ],
)
def test_dose_ranges_are_read_from_the_protocol_text(
    text: str, low: str, high: str, unit: str
) -> None:
    found = dose_range(text)
    assert found is not None and (found.low, found.high, found.unit) == (
        Decimal(low),
        Decimal(high),
        unit,
    )


@pytest.mark.parametrize("text", ["as directed", "50-25 mg", "25-50", ""])
def test_text_that_is_not_a_plain_range_offers_no_dose(text: str) -> None:
    assert dose_range(text) is None
    with pytest.raises(DoseRefused):
        check_dose(text, "25")


@pytest.mark.parametrize(
    ("entered", "ok"),
    [
        ("25", True),
        ("50", True),
        ("37.5", True),
        ("24.9", False),
        ("50.1", False),
        ("0", False),
        ("-25", False),
        ("NaN", False),
        ("abc", False),
        ("", False),
    ],
)
def test_a_dose_given_must_lie_within_the_suggestion(entered: str, ok: bool) -> None:
    if ok:
        assert check_dose("25-50 mg", entered) == (Decimal(entered), "mg")
    else:
        with pytest.raises(DoseRefused):
            check_dose("25-50 mg", entered)


def test_every_suggestion_in_the_example_protocol_is_a_plain_range() -> None:
    protocol = load_protocol()
    doses = [
        m.dose_text
        for inst in protocol.instruments.values()
        for row in inst.reassessment
        for m in row.medication
    ]
    assert doses and all(dose_range(d) is not None for d in doses)


def test_sparkline_and_score_chart_are_labelled_svg() -> None:
    line = charts.sparkline([[0, 3], [60, 9], [120, 14]], 20, label="CIWA-Ar trend <test>")
    assert line.startswith("<svg") and 'aria-label="CIWA-Ar trend &lt;test&gt;"' in line
    assert charts.sparkline([], 10) == ""
    t0 = datetime(2024, 3, 10, 5, 0, tzinfo=UTC)
    svg = charts.score_chart(
        title="CIWA-Ar scores",
        key="ciwa_ar",
        zone="America/New_York",
        max_total=67,
        now=t0 + timedelta(hours=5),
        points=[
            charts.Point(t0, 12, "Moderate", t0 + timedelta(hours=1)),
            charts.Point(t0 + timedelta(hours=1), 18, "Severe", t0 + timedelta(hours=2)),
        ],
        bands=[
            charts.BandArea("Minimal", "minimal", 0, 7),
            charts.BandArea("Moderate", "moderate", 8, 15),
            charts.BandArea("Severe", "severe", 16, 67),
        ],
        doses=[charts.DoseMark(t0 + timedelta(minutes=70), "lorazepam 3 mg <oral>")],
    )
    assert svg.count("<rect") == 3 and svg.count('class="dose"') == 1
    assert "lorazepam 3 mg &lt;oral&gt;" in svg and "<oral>" not in svg
    assert svg.count('class="due late"') == 2  # the latest reassessment is overdue at `now`
    assert "Reassessment due 10 Mar 01:00" in svg  # 06:00 UTC, New York still on EST
    assert "Reassessment due 10 Mar 03:00" in svg  # 07:00 UTC: the clocks have just sprung forward
