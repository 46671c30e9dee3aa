"""`tandem score`: JSON and human output, listing, and exit status 2 for impossible answers."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tandem.instruments.cli import score_command

from .facts import ITEMS, answers

# The command alone, mounted as the real app mounts it, so these tests don't depend on the
# other domains' commands importing cleanly; the subprocess test below covers the real entry.
app = typer.Typer()
app.callback()(lambda: None)
app.command("score")(score_command)

COWS_13 = [f"{k}={v}" for k, v in answers("cows", [2, 2, 3, 2, 2, 2, 0, 0, 0, 0, 0]).items()]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["score", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_score() -> None:
    code, out, err = run("cows", *COWS_13, "--json")

    assert (code, err) == (0, "")
    body = json.loads(out)
    assert body["instrument"] == "cows"
    assert (body["total"], body["band"], body["band_label"]) == (13, "moderate", "Moderate")
    assert body["scheme"] == "wesson_ling_2003"
    assert body["flags"] == []
    assert list(body["items"]) == [item_id for item_id, _ in ITEMS["cows"]]


def test_json_score_with_flag_and_scheme() -> None:
    phq9 = [f"{k}={v}" for k, v in answers("phq9", [0, 0, 0, 0, 0, 0, 0, 0, 1]).items()]
    code, out, _ = run("phq9", *phq9, "--json", "--scheme", "kroenke_2001")

    body = json.loads(out)
    assert (code, body["total"], body["band"]) == (0, 1, "minimal")
    assert [f["id"] for f in body["flags"]] == ["suicide_risk_screen"]
    assert body["flags"][0]["source"]


def test_scheme_changes_the_band() -> None:
    ciwa_15 = [f"{k}={v}" for k, v in answers("ciwa_ar", [5, 5, 2, 1, 1, 0, 0, 0, 0, 1]).items()]

    bands = {
        scheme: json.loads(run("ciwa_ar", *ciwa_15, "--json", "--scheme", scheme)[1])["band"]
        for scheme in ("asam_2020", "va_paws", "pmc6286444")
    }

    assert bands == {"asam_2020": "moderate", "va_paws": "severe", "pmc6286444": "moderate"}


def test_sows_gossop_has_null_band() -> None:
    sows = [f"{k}=3" for k, _ in ITEMS["sows_gossop"]]
    code, out, _ = run("sows_gossop", *sows, "--json")

    body = json.loads(out)
    assert (code, body["total"], body["band"], body["band_label"]) == (0, 30, None, None)


def test_human_output_shows_total_band_and_flags() -> None:
    phq9 = [f"{k}=3" for k, _ in ITEMS["phq9"]]
    code, out, _ = run("phq9", *phq9)

    assert code == 0
    assert "Total 27" in out
    assert "Severe" in out
    assert "suicide_risk_screen" in out


@pytest.mark.parametrize(
    ("change", "named", "allowed"),
    [
        ("resting_pulse=3", "resting_pulse", "0, 1, 2, 4"),
        ("gooseflesh=4", "gooseflesh", "0, 3, 5"),
        ("gooseflesh=three", "gooseflesh", "0, 3, 5"),
        ("gooseflesh=", "gooseflesh", "0, 3, 5"),
        ("gooseflesh", "gooseflesh", "0, 3, 5"),
        ("gooseflesh=3.0", "gooseflesh", "0, 3, 5"),
    ],
)
def test_impossible_answer_exits_2_naming_item_and_values(
    change: str, named: str, allowed: str
) -> None:
    item_id = change.partition("=")[0]
    given = [a for a in COWS_13 if not a.startswith(f"{item_id}=")] + [change]
    code, out, err = run("cows", *given, "--json")

    assert (code, out) == (2, "")
    assert named in err
    assert f"allowed values: {allowed}" in err
    assert "missing" not in err  # a malformed answer is reported once, as malformed


def test_ciwa_orientation_5_is_refused() -> None:
    ciwa = [f"{k}=0" for k, _ in ITEMS["ciwa_ar"] if k != "orientation"] + ["orientation=5"]
    code, _, err = run("ciwa_ar", *ciwa)

    assert code == 2
    assert "'orientation' cannot be 5; allowed values: 0, 1, 2, 3, 4" in err


def test_missing_and_unknown_items_are_all_reported() -> None:
    code, _, err = run("cows", *COWS_13[1:], "heart_rate=90")

    assert code == 2
    assert "'resting_pulse' is missing; allowed values: 0, 1, 2, 4" in err
    assert "'heart_rate' is not an item of cows" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give an INSTRUMENT"),
        (("sows",), "unknown instrument 'sows'"),
        (("cows", *COWS_13, "--scheme", "va_paws"), "unknown band scheme 'va_paws'"),
        (("cows", *COWS_13, "resting_pulse=1"), "answered more than once"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    code, _, err = run(*args)

    assert code == 2
    assert message in err


def test_list_json() -> None:
    code, out, _ = run("--list", "--json")

    listing = json.loads(out)
    assert code == 0
    assert sorted(i["id"] for i in listing) == sorted(ITEMS)
    for entry in listing:
        assert entry["name"]
        assert [(i["id"], tuple(i["allowed_values"])) for i in entry["items"]] == ITEMS[entry["id"]]
        assert all(i["text"] for i in entry["items"])


def test_list_human() -> None:
    code, out, _ = run("--list")

    assert code == 0
    assert "gooseflesh" in out and "0, 3, 5" in out
    assert "asam_2020" in out


def test_a_score_and_a_refusal_on_the_command_line() -> None:
    # In this process: tests/test_cli.py runs the installed script itself.
    good_code, good_out, _ = run("cows", *COWS_13, "--json")
    bad_code, _, bad_err = run("cows", *COWS_13[:-1], "gooseflesh=2", "--json")

    assert good_code == 0
    assert json.loads(good_out)["band"] == "moderate"
    assert bad_code == 2
    assert "gooseflesh" in bad_err and "0, 3, 5" in bad_err
